"""fetch_source: local paths, HTTP(S) downloads under the URL policy, s3:// objects (the security
checks of the policy itself are in test_source_policy.py)."""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from vidsearch.errors import InputError, TransientError
from vidsearch.media import probe, sources


class _Handler(http.server.BaseHTTPRequestHandler):
    video: Path  # set on the subclass made per server

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/video.mp4":
            data = self.video.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif path == "/redirect":
            self._redirect("/hop")
        elif path == "/hop":
            self._redirect("video.mp4?from=hop")
        elif path == "/to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif path == "/to-file":
            self._redirect("file:///etc/passwd")
        elif path == "/loop":
            self._redirect("/loop")
        elif path == "/empty":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/boom":
            self.send_error(503, "try later")
        else:
            self.send_error(404, "no such thing")


@pytest.fixture(scope="module")
def server(cfr_video: Path) -> Iterator[str]:
    handler = type("Handler", (_Handler,), {"video": cfr_video})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line(exc: pytest.ExceptionInfo[BaseException], *fragments: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and len(message) < 400, message
    for fragment in fragments:
        assert fragment in message, message


# --- local paths ------------------------------------------------------------------------------------


def test_local_path_is_returned_as_is(cfr_video: Path, tmp_path: Path) -> None:
    assert sources.fetch_source(str(cfr_video), tmp_path) == cfr_video.resolve()
    assert list(tmp_path.iterdir()) == []  # nothing copied


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [("missing", "no such file"), ("empty", "0 bytes"), ("directory", "not a regular file")],
)
def test_bad_local_paths(kind: str, fragment: str, tmp_path: Path) -> None:
    path = {"missing": tmp_path / "missing.mp4", "empty": tmp_path / "empty.mp4", "directory": tmp_path}[kind]
    if kind == "empty":
        path.write_bytes(b"")
    with pytest.raises(InputError) as exc:
        sources.fetch_source(str(path), tmp_path / "work")
    _one_line(exc, fragment)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("file:///etc/passwd", "file://"),
        ("ftp://example.com/video.mp4", "unsupported source scheme 'ftp'"),
        ("gopher://example.com/x", "unsupported source scheme"),
        ("http://169.254.169.254/x", sources.URL_NOT_ALLOWED),
        ("http://169.254.1.2:8080/latest/meta-data", sources.URL_NOT_ALLOWED),
        ("http://[fe80::1]/x", sources.URL_NOT_ALLOWED),
        ("http://[::ffff:169.254.169.254]/x", sources.URL_NOT_ALLOWED),
        ("", "empty source"),
    ],
)
def test_rejected_urls(source: str, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        sources.fetch_source(source, tmp_path)
    _one_line(exc, fragment)


def test_host_resolving_to_link_local_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host == "metadata.example.test":
            # One good and one link-local answer: every address must be checked.
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port)),
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(InputError) as exc:
        sources.fetch_source("http://metadata.example.test/video.mp4", tmp_path)
    assert str(exc.value) == sources.URL_NOT_ALLOWED


def test_unresolvable_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(InputError) as exc:
        sources.fetch_source("https://no-such-host.example.invalid/v.mp4", tmp_path)
    # The same answer as a refused address: no oracle of which internal names exist.
    assert str(exc.value) == sources.URL_NOT_ALLOWED


def test_unreachable_url(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        sources.fetch_source(f"http://127.0.0.1:{_closed_port()}/x", tmp_path)
    _one_line(exc, "cannot reach", "connection refused")


# --- a local HTTP server ----------------------------------------------------------------------------


def test_download_over_http(server: str, cfr_video: Path, tmp_path: Path) -> None:
    local = sources.fetch_source(f"{server}/video.mp4?token=abc", tmp_path / "work")
    assert local.parent == tmp_path / "work" and local.name == "source.mp4"
    assert local.read_bytes() == cfr_video.read_bytes()
    assert not list((tmp_path / "work").glob("*.part"))
    # And it is a video the probe accepts.
    assert probe.probe_video(local, source=f"{server}/video.mp4").video_id == probe.sha256_file(cfr_video)[:32]


def test_redirects_are_followed_and_checked(server: str, cfr_video: Path, tmp_path: Path) -> None:
    local = sources.fetch_source(f"{server}/redirect", tmp_path)
    assert local.read_bytes() == cfr_video.read_bytes()
    with pytest.raises(InputError) as exc:
        sources.fetch_source(f"{server}/to-metadata", tmp_path)
    assert str(exc.value) == sources.URL_NOT_ALLOWED
    with pytest.raises(InputError) as exc:
        sources.fetch_source(f"{server}/to-file", tmp_path)
    assert str(exc.value) == sources.URL_NOT_ALLOWED
    with pytest.raises(InputError) as exc:
        sources.fetch_source(f"{server}/loop", tmp_path)
    _one_line(exc, "too many redirects")


def test_http_errors(server: str, tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        sources.fetch_source(f"{server}/missing.mp4?sig=secret", tmp_path)
    _one_line(exc, "HTTP 404", "/missing.mp4")
    assert "secret" not in str(exc.value)
    with pytest.raises(TransientError) as exc:
        sources.fetch_source(f"{server}/boom", tmp_path)
    _one_line(exc, "HTTP 503")
    with pytest.raises(InputError) as exc:
        sources.fetch_source(f"{server}/empty", tmp_path)
    _one_line(exc, "0 bytes")


def test_download_size_cap(server: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="larger than"):
        sources.fetch_source(f"{server}/video.mp4", tmp_path, max_bytes=1000)
    assert not list(tmp_path.glob("source*"))


# --- s3:// (moto server) ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    import s3fs  # noqa: F401 - pinned, and what s3:// storage needs: a missing one fails, never skips
    from moto import server as moto_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    yield f"http://127.0.0.1:{port}"
    srv.stop()


def test_download_from_s3(s3_endpoint: str, cfr_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    import fsspec

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "VIDSEARCH_S3_ENDPOINT_URL": s3_endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    fsspec.AbstractFileSystem.clear_instance_cache()
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="videos")
    client.upload_file(str(cfr_video), "videos", "in/clip.mp4")
    client.put_object(Bucket="videos", Key="in/empty.mp4", Body=b"")

    local = sources.fetch_source("s3://videos/in/clip.mp4", tmp_path)
    assert local.parent == tmp_path and local.read_bytes() == cfr_video.read_bytes()
    with pytest.raises(InputError) as exc:
        sources.fetch_source("s3://videos/in/nothing.mp4", tmp_path)
    _one_line(exc, "no such object")
    with pytest.raises(InputError) as exc:
        sources.fetch_source("s3://videos/in/empty.mp4", tmp_path)
    _one_line(exc, "0 bytes")
    shutil.rmtree(tmp_path, ignore_errors=True)
