"""Channels without Airflow or a database: the config file, schedules and windows, URLs, feeds, listing."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from vidsearch import channels as ch
from vidsearch.errors import InputError

UTC = dt.UTC


def _t(hour: int, minute: int = 0, day: int = 10) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, minute, tzinfo=UTC)


# --- the channels file ------------------------------------------------------------------------------


def test_the_shipped_channels_file_is_valid_and_harmless():
    channels = ch.load_channels(ch.DEFAULT_CHANNELS_FILE)
    by_name = {c.name: c for c in channels}
    assert by_name["inbox"].kind == "folder" and by_name["inbox"].enabled
    assert by_name["inbox"].folder() == ch.REPO_ROOT / "data" / "inbox"
    # The examples pointing at the outside world are disabled.
    assert all(not c.enabled for c in channels if c.kind != "folder")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    return path


def test_a_channel_with_settings_and_defaults(tmp_path):
    path = _write(
        tmp_path,
        """
channels:
  - name: cams-1
    kind: s3
    location: s3://bucket/cams/
    schedule: "0 6 * * *"
    timezone: Europe/Paris
    ingest: {collection: retail, segment_seconds: 30}
""",
    )
    (channel,) = ch.load_channels(path)
    assert channel.collection == "retail" and channel.patterns == ch.DEFAULT_PATTERNS
    assert channel.ingest.conf("s3://bucket/cams/a.mp4") == {
        "source": "s3://bucket/cams/a.mp4",
        "collection": "retail",
        "segment_seconds": 30.0,
    }
    assert ch.IngestSettings().collection_name == "default"


@pytest.mark.parametrize(
    "body, phrase",
    [
        ("- {name: Bad Name, kind: folder, location: x}", "name"),
        ("- {name: a, kind: ftp, location: x}", "kind"),
        ("- {name: a, kind: folder, location: x, colour: red}", "colour"),
        ("- {name: a, kind: folder, location: x, schedule: 'every hour'}", "cron"),
        ("- {name: a, kind: folder, location: x, timezone: Mars/Base}", "time zone"),
        ("- {name: a, kind: s3, location: /local/path}", "s3://"),
        ("- {name: a, kind: folder, location: 's3://b/p'}", "path"),
        ("- {name: a, kind: folder, location: x, ingest: {segment_seconds: 0}}", "segment_seconds"),
        ("- {name: a, kind: folder, location: x, ingest: {collection: Has Caps}}", "collection"),
        ("- {name: a, kind: folder, location: x, ingest: {source: /x.mp4}}", "source"),
        ("- {name: a, kind: folder, location: x}\n  - {name: a, kind: folder, location: y}", "duplicate"),
    ],
)
def test_invalid_channels_are_rejected_naming_the_problem(tmp_path, body, phrase):
    path = _write(tmp_path, "channels:\n  " + body + "\n")
    with pytest.raises(ch.ChannelConfigError) as exc:
        ch.load_channels(path)
    assert phrase.lower() in str(exc.value).lower(), str(exc.value)


def test_the_file_comes_from_the_environment(tmp_path, monkeypatch):
    path = _write(tmp_path, "channels: []\n")
    monkeypatch.setenv(ch.CHANNELS_FILE_ENV, str(path))
    assert ch.channels_file() == path and ch.load_channels() == []
    monkeypatch.setenv(ch.CHANNELS_FILE_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(ch.ChannelConfigError, match="does not exist"):
        ch.load_channels()


# --- schedules and windows --------------------------------------------------------------------------


def _channel(**kw) -> ch.Channel:
    return ch.Channel(**{"name": "c", "kind": "folder", "location": "x", **kw})


def test_without_a_schedule_a_channel_follows_the_run_interval():
    assert ch.discovery_window(_channel(), _t(3), _t(4)) == ch.Window(_t(3), _t(4))


def test_a_daily_channel_is_due_once_a_day_over_the_whole_day():
    daily = _channel(schedule="0 6 * * *")
    due = [(h, ch.discovery_window(daily, _t(h), _t(h) + dt.timedelta(hours=1))) for h in range(24)]
    hits = [(h, w) for h, w in due if w is not None]
    # Fires at 06:00: the run over [05:00, 06:00) (its end is the fire time) discovers [06:00 yesterday, 06:00).
    assert hits == [(5, ch.Window(_t(6, day=9), _t(6)))]


def test_a_schedule_in_a_time_zone():
    paris = _channel(schedule="0 6 * * *", timezone="Europe/Paris")  # 06:00 CET = 05:00 UTC in March
    assert ch.discovery_window(paris, _t(4), _t(5)) == ch.Window(_t(5, day=9), _t(5))
    assert ch.discovery_window(paris, _t(5), _t(6)) is None


def test_consecutive_runs_give_consecutive_windows_covering_everything_once():
    for schedule in (None, "*/15 * * * *", "@hourly", "30 */3 * * *", "0 6 * * *"):
        channel = _channel(schedule=schedule)
        windows = []
        for h in range(72):
            start = _t(0) + dt.timedelta(hours=h)
            window = ch.discovery_window(channel, start, start + dt.timedelta(hours=1))
            if window is not None:
                windows.append(window)
        assert windows, schedule
        for a, b in zip(windows, windows[1:]):
            assert a.end == b.start, (schedule, a, b)  # no gap, no overlap


def test_window_membership_is_half_open():
    w = ch.Window(_t(1), _t(2))
    assert _t(1) in w and _t(1, 59) in w and _t(2) not in w and _t(0, 59) not in w
    assert None in w  # undated feed entries are candidates in every window
    assert _t(5) in ch.FULL_SCAN


def test_due_channels_named_channels_and_full_scan():
    channels = [
        _channel(name="hourly"),
        _channel(name="daily", schedule="0 6 * * *"),
        _channel(name="off", enabled=False),
    ]
    assert [c.name for c, _ in ch.due_channels(channels, _t(2), _t(3))] == ["hourly"]
    assert [c.name for c, _ in ch.due_channels(channels, _t(5), _t(6))] == ["hourly", "daily"]
    named = ch.due_channels(channels, _t(2), _t(3), only=["off", "daily"])
    assert [(c.name, w) for c, w in named] == [("daily", ch.Window(_t(2), _t(3))), ("off", ch.Window(_t(2), _t(3)))]
    assert {w for _, w in ch.due_channels(channels, _t(2), _t(3), full_scan=True)} == {ch.FULL_SCAN}
    with pytest.raises(InputError, match="unknown channel"):
        ch.due_channels(channels, _t(2), _t(3), only=["nope"])


# --- URLs, ids, run ids ------------------------------------------------------------------------------


def test_canonical_urls(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    os.symlink(tmp_path / "a.mp4", tmp_path / "link.mp4")
    assert ch.canonical_url(str(tmp_path / "sub" / ".." / "a.mp4")) == f"file://{tmp_path.resolve()}/a.mp4"
    assert ch.canonical_url(str(tmp_path / "link.mp4")) == f"file://{tmp_path.resolve()}/a.mp4"
    assert ch.canonical_url("HTTPS://User:pw@Example.ORG:443/v/a.mp4?x=1#t=3") == "https://example.org/v/a.mp4?x=1"
    assert ch.canonical_url("http://example.org:8080") == "http://example.org:8080/"
    assert ch.canonical_url("s3://bucket//in/a.mp4") == "s3://bucket/in/a.mp4"


def test_run_ids_are_deterministic_and_valid_airflow_run_ids():
    import re

    sha = "ab" * 32
    assert ch.video_id_of(sha) == "ab" * 16
    assert ch.run_id_for("inbox", ch.video_id_of(sha)) == "channel__inbox__" + "ab" * 16
    key = ch.url_key("https://Example.org/a.mp4#frag")
    assert key == ch.url_key("https://example.org/a.mp4") and re.fullmatch(r"u[0-9a-f]{32}", key)
    assert re.fullmatch(r"^[A-Za-z0-9_.~:+-]+$", ch.run_id_for("my-cams_2", key))


# --- feeds --------------------------------------------------------------------------------------------

RSS = b"""<?xml version="1.0"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">
 <channel><title>t</title>
  <item><title>one</title><link>https://example.org/page1</link>
   <enclosure url="https://cdn.example.org/one.mp4" type="video/mp4" length="1"/>
   <pubDate>Tue, 10 Mar 2026 01:30:00 GMT</pubDate></item>
  <item><title>two</title><media:content url="/media/two.mp4" type="video/mp4"/>
   <pubDate>Tue, 10 Mar 2026 02:30:00 +0100</pubDate></item>
  <item><title>undated</title><link>https://example.org/three.mp4</link></item>
 </channel>
</rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>
 <entry><title>a</title><link rel="alternate" href="https://example.org/a"/>
  <link rel="enclosure" type="video/mp4" href="https://example.org/a.mp4"/>
  <published>2026-03-10T01:10:00Z</published><updated>2026-03-10T05:00:00Z</updated></entry>
 <entry><title>b</title><link href="https://example.org/b.mp4"/><updated>2026-03-10T02:10:00+00:00</updated></entry>
</feed>"""


def test_rss_entries_with_enclosures_media_and_links():
    entries = ch.parse_feed(RSS, "https://example.org/feed.xml")
    assert [(e.url, e.published, e.title) for e in entries] == [
        ("https://cdn.example.org/one.mp4", _t(1, 30), "one"),
        ("https://example.org/media/two.mp4", _t(1, 30), "two"),
        ("https://example.org/three.mp4", None, "undated"),
    ]


def test_atom_entries_published_else_updated():
    entries = ch.parse_feed(ATOM)
    assert [(e.url, e.published) for e in entries] == [
        ("https://example.org/a.mp4", _t(1, 10)),
        ("https://example.org/b.mp4", _t(2, 10)),
    ]


def test_plain_url_lists():
    text = b"# my list\nhttps://example.org/a.mp4 2026-03-10T01:00:00Z\n\n  https://example.org/b.mp4\n"
    entries = ch.parse_feed(text)
    assert [(e.url, e.published) for e in entries] == [
        ("https://example.org/a.mp4", _t(1)),
        ("https://example.org/b.mp4", None),
    ]


def test_bad_xml_is_a_permanent_error():
    with pytest.raises(InputError):
        ch.parse_feed(b"<rss><channel><item></rss>")
    with pytest.raises(InputError, match="unknown XML root"):
        ch.parse_feed(b"<html></html>")


def test_feed_listing_is_windowed(tmp_path):
    feed = tmp_path / "feed.xml"
    feed.write_bytes(RSS)
    channel = _channel(kind="feed", location=str(feed))
    found = ch.list_feed(channel, ch.Window(_t(1), _t(2)))
    # one.mp4 was published at 01:30 UTC; the undated entry is a candidate in every window; two.mp4's
    # URL is relative to a local file, so not fetchable: skipped.
    assert [c.source for c in found] == ["https://cdn.example.org/one.mp4", "https://example.org/three.mp4"]
    assert all(not c.hashable for c in found)
    assert {c.source for c in ch.list_feed(channel, ch.Window(_t(3), _t(4)))} == {"https://example.org/three.mp4"}


# --- folders ------------------------------------------------------------------------------------------


def _file(path: Path, data: bytes, when: dt.datetime) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


def test_folder_listing_by_pattern_and_visibility_whatever_the_time(tmp_path):
    _file(tmp_path / "in.mp4", b"a", _t(1, 15))
    _file(tmp_path / "sub" / "deep.MKV", b"b", _t(1, 45))
    _file(tmp_path / "late.mp4", b"c", _t(2))  # outside the window: listed all the same
    _file(tmp_path / "notes.txt", b"d", _t(1, 15))
    _file(tmp_path / ".upload.mp4", b"e", _t(1, 15))
    _file(tmp_path / ".partial" / "x.mp4", b"f", _t(1, 15))
    _file(tmp_path / "empty.mp4", b"", _t(1, 15))
    channel = _channel(location=str(tmp_path))
    found = ch.list_folder(channel, ch.Window(_t(1), _t(2)))
    assert sorted(Path(c.source).name for c in found) == ["deep.MKV", "in.mp4", "late.mp4"]
    assert {Path(c.source).name: c.item_time for c in found}["late.mp4"] == _t(2)  # the modification time
    flat = _channel(location=str(tmp_path), recursive=False)
    assert sorted(Path(c.source).name for c in ch.list_folder(flat, ch.Window(_t(1), _t(2)))) == ["in.mp4", "late.mp4"]
    assert len(ch.list_folder(channel, ch.FULL_SCAN)) == 3


def test_a_missing_folder_is_an_error_worth_a_retry(tmp_path):
    from vidsearch.errors import TransientError

    with pytest.raises(TransientError, match="does not exist"):
        ch.list_folder(_channel(location=str(tmp_path / "gone")), ch.FULL_SCAN)
