"""Feed entries may name only http(s) URLs the source URL policy allows, or s3:// objects of the
feed channel's own `bucket` (no Postgres needed)."""

from __future__ import annotations

import logging

import pytest
from vidsearch import channels as ch

FEED = b"""# a URL list
https://cdn.example.org/ok.mp4
s3://other-bucket/private/secret.mp4
s3://own-bucket/in/ok.mp4
http://169.254.169.254/latest/meta-data/iam/security-credentials/
http://127.0.0.1:8080/internal.mp4
http://[fd00:ec2::254]/latest/
http://localhost:9000/admin.mp4
file:///etc/passwd
https://cdn.example.org/signed.mp4?X-Amz-Signature=deadbeef
"""


def _listed(tmp_path, monkeypatch, caplog, **extra) -> list[str]:
    monkeypatch.delenv("VIDSEARCH_ALLOWED_PRIVATE_HOSTS", raising=False)
    feed = tmp_path / "feed.txt"
    feed.write_bytes(FEED)
    channel = ch.Channel(name="news", kind="feed", location=str(feed), **extra)
    with caplog.at_level(logging.WARNING):
        return [c.source for c in ch.list_feed(channel, ch.FULL_SCAN)]


def test_internal_urls_and_foreign_buckets_are_refused(tmp_path, monkeypatch, caplog):
    listed = _listed(tmp_path, monkeypatch, caplog, bucket="own-bucket")
    assert listed == [
        "https://cdn.example.org/ok.mp4",
        "s3://own-bucket/in/ok.mp4",
        "https://cdn.example.org/signed.mp4?X-Amz-Signature=deadbeef",
    ]
    assert "other-bucket/private/secret.mp4" in caplog.text and "not in the channel's bucket" in caplog.text
    assert "deadbeef" not in caplog.text


def test_without_a_bucket_setting_s3_entries_are_refused(tmp_path, monkeypatch, caplog):
    listed = _listed(tmp_path, monkeypatch, caplog)
    assert listed == ["https://cdn.example.org/ok.mp4", "https://cdn.example.org/signed.mp4?X-Amz-Signature=deadbeef"]
    assert "bucket setting" in caplog.text


def test_only_feeds_have_a_bucket():
    with pytest.raises(ValueError, match="only a feed channel"):
        ch.Channel(name="a", kind="s3", location="s3://bkt/p", bucket="bkt")


def test_canonical_url_masks_signatures():
    assert (
        ch.canonical_url("https://Cdn.example.org/v.mp4?id=1&X-Amz-Signature=abc&token=t")
        == "https://cdn.example.org/v.mp4?id=1&X-Amz-Signature=REDACTED&token=REDACTED"
    )
