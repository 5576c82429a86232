"""The ranged video route `GET /api/collections/{c}/videos/{video_id}/video` (docs/api.md): the staged
source video streamed from object storage with HTTP byte ranges, for the UI's `<video>` player.

Against the real stack of tests/search/conftest.py (the pipeline-ingested H.264 MP4 on `file://`
storage) and, for `s3://`, a local S3 server (moto's server mode, as tests/integration uses) holding a
VP9 WebM registered in a collection of its own. The expected bytes are read from storage directly.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest
from test_api_authz import _token
from vidsearch.search import playback_type, video_media_type
from vidsearch.stores import storage
from vidsearch_api.ranges import Unsatisfiable, parse_range

C = "search_api"
API = f"api/collections/{C}"


# ------------------------------------------------------------------------ pure: ranges, media types


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", (0, 0)),
        ("bytes=0-99", (0, 99)),
        ("bytes=10-", (10, 999)),
        ("bytes=-1", (999, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),  # a suffix longer than the body: all of it
        ("bytes=990-5000", (990, 999)),  # an end past the body is clipped
        ("bytes=999-999", (999, 999)),
        (" bytes = 5-9 ", (5, 9)),
        ("BYTES=5-9", (5, 9)),
        ("bytes=5-9, 20-29", (5, 9)),  # several ranges: the first satisfiable one alone
        ("bytes=2000-3000, 20-29", (20, 29)),
        ("bytes=, 3-4", (3, 4)),
        ("items=0-5", None),  # a unit we do not know: ignored, the whole body
        ("0-5", None),
    ],
)
def test_parse_range(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes=1000-",
        "bytes=1000-2000",
        "bytes=5-2",
        "bytes=-0",
        "bytes=x-",
        "bytes=-",
        "bytes=",
        "bytes=1-2-3",
        "bytes=0x10-",
        "bytes=+1-2",
        "bytes=" + ",".join(["0-1"] * 101),
    ],
)
def test_parse_range_unsatisfiable_or_malformed(header):
    with pytest.raises(Unsatisfiable):
        parse_range(header, 1000)


def test_parse_range_on_an_empty_body():
    assert parse_range(None, 0) is None
    for header in ["bytes=0-", "bytes=-5", "bytes=0-0"]:
        with pytest.raises(Unsatisfiable):
            parse_range(header, 0)


@pytest.mark.parametrize(
    ("uri", "manifest", "media_type", "playback"),
    [
        (
            "file:///v/source.mp4",
            {"container": "mov,mp4,m4a,3gp,3g2,mj2", "video_codec": "h264", "audio_codec": "aac"},
            "video/mp4",
            'video/mp4; codecs="avc1.42E01E, mp4a.40.2"',
        ),
        (
            "s3://b/v/source.webm",
            {"container": "matroska,webm", "video_codec": "vp9", "audio_codec": "opus"},
            "video/webm",
            'video/webm; codecs="vp9, opus"',
        ),
        (
            "s3://b/v/source.mkv",
            {"container": "matroska,webm", "video_codec": "h264"},
            "video/x-matroska",
            'video/x-matroska; codecs="avc1.42E01E"',
        ),
        # QuickTime is asked as MP4, Matroska with WebM codecs as WebM (what Chromium's demuxers take).
        (
            "file:///v/source.MOV",
            {"container": "mov,mp4", "video_codec": "h264", "audio_codec": "aac"},
            "video/quicktime",
            'video/mp4; codecs="avc1.42E01E, mp4a.40.2"',
        ),
        (
            "s3://b/v/source.mkv",
            {"container": "matroska,webm", "video_codec": "vp9", "audio_codec": "opus"},
            "video/x-matroska",
            'video/webm; codecs="vp9, opus"',
        ),
        ("file:///v/source.mp4", {"video_codec": "hevc"}, "video/mp4", 'video/mp4; codecs="hvc1.1.6.L93.B0"'),
        ("file:///v/source.mp4", {"video_codec": "vp9"}, "video/mp4", 'video/mp4; codecs="vp09.00.10.08"'),
        ("file:///v/source.avi", {"video_codec": "mjpeg"}, "video/x-msvideo", "video/x-msvideo"),
        # No suffix: ffprobe's container name decides (matroska with WebM codecs is WebM).
        (
            "file:///v/source",
            {"container": "matroska,webm", "video_codec": "vp8"},
            "video/webm",
            'video/webm; codecs="vp8"',
        ),
        (
            "file:///v/source",
            {"container": "matroska,webm", "video_codec": "h264"},
            "video/x-matroska",
            'video/x-matroska; codecs="avc1.42E01E"',
        ),
        (
            "file:///v/source",
            {"container": "mpegts", "video_codec": "h264"},
            "video/mp2t",
            'video/mp2t; codecs="avc1.42E01E"',
        ),
        ("file:///v/source", {"container": "weird"}, "application/octet-stream", "application/octet-stream"),
    ],
)
def test_media_types(uri, manifest, media_type, playback):
    assert video_media_type(uri, manifest) == media_type
    assert playback_type(media_type, manifest) == playback


# ---------------------------------------------------------------------------- the route, file://


@pytest.fixture(scope="module")
def source(ingested, catalog) -> dict:
    row = catalog.get_video(C, ingested["video_id"])
    data = storage.read_bytes(row["source_uri"])
    assert len(data) > 10_000
    return {"uri": row["source_uri"], "data": data, "url": f"{API}/videos/{ingested['video_id']}/video"}


def _check_206(r, data: bytes, start: int, end: int) -> None:
    assert r.status_code == 206, r.text[:200]
    assert r.content == data[start : end + 1]
    assert r.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
    assert r.headers["content-length"] == str(end - start + 1)
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"] == "video/mp4"


@pytest.mark.integration
def test_the_video_list_names_the_route_and_the_media_type(api_client, ingested, source):
    (video,) = api_client.get(f"{API}/videos").json()
    assert video["video_url"] == f"/vidsearch/{source['url']}"
    assert video["media_type"] == "video/mp4"
    assert video["playback_type"] == 'video/mp4; codecs="avc1.42E01E"'  # the generated video has no audio
    assert (video["container"].split(",")[0], video["video_codec"], video["audio_codec"]) == ("mov", "h264", None)
    assert "source_uri" not in video and "manifest" not in video  # storage locations stay inside


@pytest.mark.integration
def test_whole_video_without_a_range(api_client, source):
    r = api_client.get(source["url"])
    assert r.status_code == 200
    assert r.content == source["data"]
    assert r.headers["content-length"] == str(len(source["data"]))
    assert r.headers["content-type"] == "video/mp4"
    assert r.headers["accept-ranges"] == "bytes"
    assert "content-range" not in r.headers
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["etag"].startswith('"sha256-')


@pytest.mark.integration
def test_byte_ranges_answer_206_with_exactly_those_bytes(api_client, source):
    data = source["data"]
    size = len(data)
    cases = {
        "bytes=0-99": (0, 99),  # the start
        "bytes=0-0": (0, 0),
        f"bytes={size // 2}-{size // 2 + 4095}": (size // 2, size // 2 + 4095),  # the middle
        "bytes=-700": (size - 700, size - 1),  # the last 700 bytes
        f"bytes={size - 300}-": (size - 300, size - 1),  # open-ended
        "bytes=1000-": (1000, size - 1),
        f"bytes={size - 10}-{size + 10_000}": (size - 10, size - 1),  # clipped to the end
        f"bytes=-{size * 2}": (0, size - 1),
        "bytes=100-199,500-599": (100, 199),  # several: the first one only
    }
    for header, (start, end) in cases.items():
        _check_206(api_client.get(source["url"], headers={"Range": header}), data, start, end)


@pytest.mark.integration
def test_if_range_sends_everything_when_the_version_differs(api_client, source):
    etag = api_client.get(source["url"], headers={"Range": "bytes=0-0"}).headers["etag"]
    same = api_client.get(source["url"], headers={"Range": "bytes=5-9", "If-Range": etag})
    _check_206(same, source["data"], 5, 9)
    other = api_client.get(source["url"], headers={"Range": "bytes=5-9", "If-Range": '"sha256-other"'})
    assert other.status_code == 200 and other.content == source["data"]


@pytest.mark.integration
def test_unsatisfiable_or_malformed_ranges_answer_416(api_client, source):
    size = len(source["data"])
    for header in [f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=9-5", "bytes=-0", "bytes=abc"]:
        r = api_client.get(source["url"], headers={"Range": header})
        assert r.status_code == 416, (header, r.status_code)
        assert r.headers["content-range"] == f"bytes */{size}"
        assert r.content == b""
    # A unit other than bytes is ignored: the whole video.
    r = api_client.get(source["url"], headers={"Range": "frames=0-5"})
    assert r.status_code == 200 and r.content == source["data"]


@pytest.mark.integration
def test_the_body_is_streamed_in_chunks_never_read_whole(api_client, source, monkeypatch):
    from vidsearch_api import routes

    chunks: list[int] = []
    real = storage.iter_range

    def spy(uri, start, length, chunk_size):
        for block in real(uri, start, length, chunk_size):
            chunks.append(len(block))
            yield block

    def whole(*args, **kwargs):
        raise AssertionError("the video route must not read the whole object into memory")

    monkeypatch.setattr(routes, "VIDEO_CHUNK", 4096)
    monkeypatch.setattr(routes.storage, "iter_range", spy)
    monkeypatch.setattr(routes.storage, "read_bytes", whole)
    r = api_client.get(source["url"])
    assert r.status_code == 200 and r.content == source["data"]
    assert len(chunks) == -(-len(source["data"]) // 4096) and max(chunks) == 4096
    chunks.clear()
    _check_206(api_client.get(source["url"], headers={"Range": "bytes=100-10099"}), source["data"], 100, 10099)
    assert chunks == [4096, 4096, 1808]


@pytest.mark.integration
def test_unknown_video_or_collection_is_404(api_client, ingested, source):
    assert api_client.get(f"{API}/videos/{'0' * 32}/video").status_code == 404
    assert api_client.get(f"{API}/videos/nope/video", headers={"Range": "bytes=0-1"}).status_code == 404
    r = api_client.get(f"api/collections/no_such_collection/videos/{ingested['video_id']}/video")
    assert r.status_code == 404 and "detail" in r.json()


@pytest.mark.integration
def test_credentials_and_read_access_are_required(anon_client, api_app, source, airflow_db):
    from fastapi.testclient import TestClient

    assert anon_client.get(source["url"]).status_code == 401
    assert anon_client.get(source["url"], headers={"Range": "bytes=0-1"}).status_code == 401
    for role in (None, "no-such-role"):
        headers = {"Authorization": f"Bearer {_token(f'video-{role}', role)}"}
        with TestClient(api_app, base_url="http://testserver/vidsearch/", headers=headers) as client:
            r = client.get(source["url"], headers={"Range": "bytes=0-1"})
            assert r.status_code == 403, (role, r.status_code)
            assert "video/" not in r.headers.get("content-type", "")
    viewer = {"Authorization": f"Bearer {_token('video-viewer', 'viewer')}"}
    with TestClient(api_app, base_url="http://testserver/vidsearch/", headers=viewer) as client:
        _check_206(client.get(source["url"], headers={"Range": "bytes=0-9"}), source["data"], 0, 9)


@pytest.mark.integration
def test_a_real_server_streams_ranges_too(live_api, source):
    """Over uvicorn (what a browser talks to): the declared length and the bytes agree."""
    import httpx

    url = live_api.base_url + source["url"]
    with httpx.Client(headers=live_api.headers, timeout=30) as client:
        r = client.get(url, headers={"Range": "bytes=-2048"})
        assert r.status_code == 206 and r.content == source["data"][-2048:]
        with client.stream("GET", url) as r:
            assert r.status_code == 200 and "chunked" not in r.headers.get("transfer-encoding", "")
            assert b"".join(r.iter_bytes()) == source["data"]


# -------------------------------------------------------------------------------- the route, s3://


@pytest.fixture()
def s3_video(s3_bucket, catalog, ingested, tmp_path):
    """A 2 s VP9 WebM in a bucket of the local S3 server, the staged source of a video of its own
    collection (removed afterwards)."""
    import sqlalchemy as sa
    from vidsearch.media.probe import probe_video
    from vidsearch.stores.catalog import collections, videos

    bucket = f"vidsearch-video-{uuid.uuid4().hex[:8]}"
    s3_bucket(bucket)
    local = tmp_path / "clip.webm"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x90:rate=10:duration=2",
            "-c:v",
            "libvpx-vp9",
            "-b:v",
            "200k",
            "-deadline",
            "realtime",
            "-y",
            str(local),
        ],
        check=True,
        timeout=120,
    )
    manifest = probe_video(local, str(local))
    uri = f"s3://{bucket}/objects/videos/{manifest.video_id}/source.webm"
    storage.upload(local, uri)
    name = f"video_s3_{uuid.uuid4().hex[:6]}"
    catalog.register_collection(name, "openai/clip-vit-base-patch32", 512, f"VideoObjects_{name}")
    catalog.upsert_video(name, manifest, uri, f"video-s3-{uuid.uuid4().hex[:6]}")
    yield {"collection": name, "video_id": manifest.video_id, "data": local.read_bytes(), "uri": uri}
    with catalog.engine.begin() as conn:
        conn.execute(sa.delete(videos).where(videos.c.collection == name))
        conn.execute(sa.delete(collections).where(collections.c.name == name))


@pytest.mark.integration
def test_ranges_from_s3_storage(api_client, s3_video, monkeypatch):
    from vidsearch_api import routes

    monkeypatch.setattr(routes, "VIDEO_CHUNK", 1000)  # several ranged reads per answer
    data, size = s3_video["data"], len(s3_video["data"])
    url = f"api/collections/{s3_video['collection']}/videos/{s3_video['video_id']}/video"
    (listed,) = api_client.get(f"api/collections/{s3_video['collection']}/videos").json()
    assert listed["media_type"] == "video/webm" and listed["playback_type"] == 'video/webm; codecs="vp9"'

    r = api_client.get(url)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "video/webm" and r.headers["content-length"] == str(size)
    for header, (start, end) in {
        "bytes=0-1499": (0, 1499),
        f"bytes={size // 2}-{size // 2 + 2500}": (size // 2, size // 2 + 2500),
        "bytes=-1234": (size - 1234, size - 1),
        f"bytes={size - 77}-": (size - 77, size - 1),
    }.items():
        r = api_client.get(url, headers={"Range": header})
        assert r.status_code == 206, (header, r.text[:200])
        assert r.content == data[start : end + 1]
        assert r.headers["content-range"] == f"bytes {start}-{end}/{size}"
        assert r.headers["content-type"] == "video/webm"
    r = api_client.get(url, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    # The object gone from the bucket: 404, not a 500.
    storage.delete_prefix(s3_video["uri"])
    assert api_client.get(url).status_code == 404
