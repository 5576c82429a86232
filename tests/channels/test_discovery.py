"""Discovery with dedupe against the real catalog (Postgres), without Airflow: folders, S3 (moto's
server), feeds over HTTP."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import socket
import threading
from functools import partial
from pathlib import Path

import pytest
from channel_helpers import make_file
from vidsearch import channels as ch

pytestmark = pytest.mark.integration
UTC = dt.UTC
T0 = dt.datetime(2026, 3, 10, 1, tzinfo=UTC)
WINDOW = ch.Window(T0, T0 + dt.timedelta(hours=1))


def _mins(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ingested(catalog, collection: str, data: bytes, source: str = "/elsewhere/video.mp4") -> str:
    """Put a video with this content into the catalog, as video_ingest's probe would."""
    import sqlalchemy as sa
    from vidsearch.stores.catalog import videos

    sha = _sha(data)
    with catalog.engine.begin() as conn:
        conn.execute(
            sa.insert(videos).values(
                collection=collection,
                video_id=sha[:32],
                source=source,
                content_sha256=sha,
                source_uri="file:///objects/source.mp4",
                manifest={},
                state="done",
            )
        )
    return sha[:32]


def _folder_channel(name: str, folder: Path, collection: str) -> ch.Channel:
    return ch.Channel(
        name=name, kind="folder", location=str(folder), ingest={"collection": collection, "sample_fps": 2}
    )


def test_folder_discovery_triggers_only_new_content_once(catalog, tmp_path):
    folder = tmp_path / "inbox"
    new1 = make_file(folder / "new1.mp4", b"video one" * 100, _mins(10))
    new2 = make_file(folder / "day" / "new2.mp4", b"video two" * 100, _mins(20))
    make_file(folder / "seen.mp4", b"video three" * 100, _mins(15))
    make_file(folder / "copy-of-new1.mp4", b"video one" * 100, _mins(30))
    make_file(folder / "yesterday.mp4", b"video four" * 100, T0 - dt.timedelta(days=1))
    ingested(catalog, "chan_folder", b"video three" * 100)
    channel = _folder_channel("drop", folder, "chan_folder")

    old = folder / "yesterday.mp4"
    found = ch.discover_channel(channel, catalog, WINDOW, discovery_run_id="scheduled__1", interval=(T0, WINDOW.end))

    # Everything not seen yet, whatever its time (files listed oldest first).
    assert [i.source for i in found.new] == [str(old.resolve()), str(new1.resolve()), str(new2.resolve())]
    sha1 = _sha(b"video one" * 100)
    first = found.new[1]
    assert first.item_key == first.video_id == sha1[:32] and first.content_sha256 == sha1
    assert first.run_id == f"channel__drop__{sha1[:32]}"
    assert first.conf == {"source": str(new1.resolve()), "collection": "chan_folder", "sample_fps": 2.0}
    assert first.trigger_kwargs()["note"].startswith("drop: new1.mp4, 2026-03-10T01:10:00")
    assert {k: len(v) for k, v in found.skipped.items()} == {"already ingested": 1, "duplicate content": 1}
    rows = catalog.list_channel_items("drop")
    assert sorted((r["source"], r["discovery_run_id"], r["interval_start"]) for r in rows) == sorted(
        [
            (str(old.resolve()), "scheduled__1", T0),
            (str(new1.resolve()), "scheduled__1", T0),
            (str(new2.resolve()), "scheduled__1", T0),
        ]
    )

    # Another run over the same window: nothing new (the known files are not even hashed again).
    again = ch.discover_channel(channel, catalog, WINDOW, discovery_run_id="scheduled__2")
    assert again.new == [] and len(again.skipped["already discovered"]) == 4
    # The same run again (cleared or retried): its own items again, under the same run ids.
    same = ch.discover_channel(channel, catalog, WINDOW, discovery_run_id="scheduled__1")
    assert [i.run_id for i in same.new] == [i.run_id for i in found.new]
    # A file moved in keeping an old modification time (mv, cp -p, rsync -a) is found by the next run.
    moved = make_file(folder / "archive" / "moved.mp4", b"video five" * 100, T0 - dt.timedelta(days=400))
    nxt = ch.Window(WINDOW.end, WINDOW.end + dt.timedelta(hours=1))
    later = ch.discover_channel(channel, catalog, nxt, discovery_run_id="scheduled__3")
    assert [i.source for i in later.new] == [str(moved.resolve())]
    # A full scan finds nothing else.
    full = ch.discover_channel(channel, catalog, ch.FULL_SCAN, discovery_run_id="manual__full")
    assert full.new == []


def test_content_dedupe_is_per_collection_and_across_channels(catalog, tmp_path):
    folder = tmp_path / "shared"
    make_file(folder / "a.mp4", b"shared a" * 100, _mins(5))
    make_file(folder / "b.mp4", b"shared b" * 100, _mins(6))
    first = ch.discover_channel(_folder_channel("one", folder, "chan_shared"), catalog, WINDOW, discovery_run_id="r")
    assert len(first.new) == 2
    # Another channel seeing the same content for the same collection: already handed over.
    second = ch.discover_channel(_folder_channel("two", folder, "chan_shared"), catalog, WINDOW, discovery_run_id="r")
    assert second.new == [] and len(second.skipped["already discovered"]) == 2
    # For another collection the same videos are new.
    other = ch.discover_channel(_folder_channel("three", folder, "chan_other"), catalog, WINDOW, discovery_run_id="r")
    assert len(other.new) == 2


def test_a_file_whose_content_changed_is_a_new_video(catalog, tmp_path):
    folder = tmp_path / "edit"
    path = make_file(folder / "clip.mp4", b"first cut" * 100, _mins(5))
    channel = _folder_channel("edits", folder, "chan_edit")
    (first,) = ch.discover_channel(channel, catalog, WINDOW, discovery_run_id="r1").new
    later = ch.Window(WINDOW.end, WINDOW.end + dt.timedelta(hours=1))
    make_file(path, b"final cut" * 100, later.start + dt.timedelta(minutes=1))
    (second,) = ch.discover_channel(channel, catalog, later, discovery_run_id="r2").new
    assert second.canonical_url == first.canonical_url and second.run_id != first.run_id


# --- S3 -------------------------------------------------------------------------------------------


@pytest.fixture()
def s3(monkeypatch):
    import boto3
    import fsspec
    from moto import server as moto_server  # pinned: a missing one fails, never skips

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "VIDSEARCH_S3_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    fsspec.AbstractFileSystem.clear_instance_cache()
    yield boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    fsspec.AbstractFileSystem.clear_instance_cache()
    server.stop()


def test_s3_prefix_discovery(catalog, s3):
    s3.create_bucket(Bucket="cams")
    s3.put_object(Bucket="cams", Key="in/a.mp4", Body=b"s3 video a" * 100)
    s3.put_object(Bucket="cams", Key="in/2026/b.mp4", Body=b"s3 video b" * 100)
    s3.put_object(Bucket="cams", Key="in/2026/b-again.mp4", Body=b"s3 video b" * 100)
    s3.put_object(Bucket="cams", Key="in/.tmp/c.mp4", Body=b"partial" * 100)
    s3.put_object(Bucket="cams", Key="in/readme.txt", Body=b"text")
    s3.put_object(Bucket="cams", Key="other/d.mp4", Body=b"s3 video d" * 100)
    ingested(catalog, "chan_s3", b"s3 video a" * 100)
    now = dt.datetime.now(UTC)
    window = ch.Window(now - dt.timedelta(hours=1), now + dt.timedelta(hours=1))
    channel = ch.Channel(name="cams", kind="s3", location="s3://cams/in", ingest={"collection": "chan_s3"})

    found = ch.discover_channel(channel, catalog, window, discovery_run_id="r1")

    assert len(found.new) == 1 and found.new[0].source.startswith("s3://cams/in/2026/b")
    assert found.new[0].video_id == _sha(b"s3 video b" * 100)[:32]
    assert {k: len(v) for k, v in found.skipped.items()} == {"already ingested": 1, "duplicate content": 1}
    assert ch.discover_channel(channel, catalog, window, discovery_run_id="r2").new == []
    # Objects are listed whatever their time: a window in the past lists the same keys.
    past = ch.Window(now - dt.timedelta(days=2), now - dt.timedelta(days=1))
    assert sorted(c.source for c in ch.list_s3(channel, past)) == [
        "s3://cams/in/2026/b-again.mp4",
        "s3://cams/in/2026/b.mp4",
        "s3://cams/in/a.mp4",
    ]


# --- feeds over HTTP --------------------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def www(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_feed_discovery_dedupes_by_url(catalog, www):
    root, base = www
    (root / "feed.xml").write_text(
        f"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">
<entry><title>in window</title><link rel="enclosure" href="/v/one.mp4"/><published>2026-03-10T01:20:00Z</published></entry>
<entry><title>same URL again</title><link rel="enclosure" href="{base}/v/one.mp4#t=10"/><published>2026-03-10T01:25:00Z</published></entry>
<entry><title>ingested</title><link href="{base}/v/two.mp4"/><updated>2026-03-10T01:40:00Z</updated></entry>
<entry><title>later</title><link href="{base}/v/three.mp4"/><published>2026-03-10T03:00:00Z</published></entry>
</feed>"""
    )
    ingested(catalog, "chan_feed", b"two", source=f"{base}/v/two.mp4")
    channel = ch.Channel(name="news", kind="feed", location=f"{base}/feed.xml", ingest={"collection": "chan_feed"})

    found = ch.discover_channel(channel, catalog, WINDOW, discovery_run_id="r1")

    assert [(i.source, i.title) for i in found.new] == [(f"{base}/v/one.mp4", "in window")]
    item = found.new[0]
    assert item.content_sha256 is None and item.run_id == f"channel__news__{ch.url_key(item.source)}"
    assert {k: len(v) for k, v in found.skipped.items()} == {"duplicate URL": 1, "already ingested": 1}
    assert ch.discover_channel(channel, catalog, WINDOW, discovery_run_id="r2").new == []


def test_an_unreachable_feed_is_worth_a_retry(catalog):
    from vidsearch.errors import VidsearchError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = ch.Channel(name="down", kind="feed", location=f"http://127.0.0.1:{port}/feed.xml")
    with pytest.raises(VidsearchError):
        ch.discover_channel(channel, catalog, WINDOW, discovery_run_id="r")
