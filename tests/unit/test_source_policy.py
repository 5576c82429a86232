"""The source policy (media/sources.py): URLs, local paths, download bounds, secrets in URLs.

Each test here fails on the fetcher before the policy (docs/security.md §2).
"""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vidsearch.errors import InputError
from vidsearch.media import sources

# --- URLs: refused before any connection, all with one message ---------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening loopback socket that must never see a connection."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield sock
    sock.close()


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Records (and refuses) every outgoing connection attempt of this process."""
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise ConnectionRefusedError("test: no connection allowed")
        real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host in answers:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]
            ]
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def _refused_forms(port: int) -> list[str]:
    return [
        # The parser differential: urlparse saw localhost, the connection went to the metadata service.
        f"http://169.254.169.254\\@localhost:{port}/latest/meta-data/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://169.254.170.2/v2/credentials",
        # NAT64, 6to4, IPv4-mapped and IPv4-compatible forms of the metadata and loopback addresses.
        "http://[64:ff9b::a9fe:a9fe]/",
        f"http://[64:ff9b::7f00:1]:{port}/",
        "http://[2002:a9fe:a9fe::1]/",
        f"http://[2002:7f00:1::1]:{port}/",
        "http://[::ffff:169.254.169.254]/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[::127.0.0.1]:{port}/",
        # Loopback, private, link-local, multicast, unspecified, shared address space.
        f"http://127.0.0.1:{port}/",
        f"http://localhost:{port}/",
        f"http://2130706433:{port}/",
        f"http://0x7f.1:{port}/",
        f"http://0.0.0.0:{port}/",
        "http://[::]/",
        "http://[::1]/",
        "http://10.1.2.3/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://224.0.0.1/",
        "http://100.64.0.1/",
        # Names: one answer refused among good ones; unresolvable.
        "http://mixed.example.test/v.mp4",
        "http://internal.example.test/v.mp4",
        "http://no-such-host.invalid/v.mp4",
        # Not http(s).
        "ftp://example.com/v.mp4",
    ]


def test_every_refused_form_gets_one_message_and_no_connection(
    monkeypatch: pytest.MonkeyPatch, listener: socket.socket, no_connect: list[object]
) -> None:
    monkeypatch.delenv(sources.ALLOWED_PRIVATE_HOSTS_ENV, raising=False)
    _fake_dns(monkeypatch, {"mixed.example.test": ["93.184.215.14", "10.0.0.5"], "internal.example.test": ["10.0.0.5"]})
    port = listener.getsockname()[1]
    messages = {}
    for url in _refused_forms(port):
        with pytest.raises(InputError) as exc:
            sources.check_url(url)
        messages[url] = str(exc.value)
    assert set(messages.values()) == {sources.URL_NOT_ALLOWED}, messages
    assert no_connect == []
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_fetch_refuses_before_connecting(
    monkeypatch: pytest.MonkeyPatch, listener: socket.socket, no_connect: list[object], tmp_path: Path
) -> None:
    """fetch_source, not only check_url; the backslash form even with localhost allow-listed."""
    monkeypatch.setenv(sources.ALLOWED_PRIVATE_HOSTS_ENV, "localhost,127.0.0.1")
    port = listener.getsockname()[1]
    for url in (
        f"http://169.254.169.254\\@localhost:{port}/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::1]/",
    ):
        with pytest.raises(InputError) as exc:
            sources.fetch_source(url, tmp_path)
        assert str(exc.value) == sources.URL_NOT_ALLOWED, url
    assert no_connect == []
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_metadata_addresses_stay_refused_when_allow_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sources.ALLOWED_PRIVATE_HOSTS_ENV, "169.254.0.0/16,fd00::/8,100.64.0.0/10")
    for url in ("http://169.254.169.254/", "http://[fd00:ec2::254]/", "http://100.100.100.200/"):
        with pytest.raises(InputError):
            sources.check_url(url)
    assert sources.check_url("http://169.254.10.10/").address == "169.254.10.10"


def test_allow_list_by_name_and_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sources.ALLOWED_PRIVATE_HOSTS_ENV, "minio, 10.0.5.0/24")
    _fake_dns(monkeypatch, {"minio": ["172.18.0.3"], "other": ["172.18.0.4"], "pub.example.test": ["93.184.215.14"]})
    assert sources.check_url("http://minio:9000/b/v.mp4").address == "172.18.0.3"
    assert sources.check_url("http://10.0.5.7/v.mp4").address == "10.0.5.7"
    assert sources.check_url("https://pub.example.test/v.mp4").address == "93.184.215.14"
    for url in ("http://other/v.mp4", "http://10.0.6.1/v.mp4"):
        with pytest.raises(InputError):
            sources.check_url(url)


def test_connection_goes_to_the_checked_address(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The name is resolved once: a second answer (DNS rebinding) is never asked for."""
    calls: list[str] = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BytesHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    real = socket.getaddrinfo

    def rebinding(host, p, *args, **kwargs):
        if host == "rebind.example.test":
            calls.append(host)
            answer = "127.0.0.1" if len(calls) == 1 else "169.254.169.254"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, p))]
        return real(host, p, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setenv(sources.ALLOWED_PRIVATE_HOSTS_ENV, "rebind.example.test")
    try:
        local = sources.fetch_source(f"http://rebind.example.test:{port}/bytes/1000", tmp_path)
        assert local.stat().st_size == 1000
        assert calls == ["rebind.example.test"]
        assert _BytesHandler.hosts[-1] == f"rebind.example.test:{port}"  # Host header kept
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- local paths ------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    inside = tmp_path / "root"
    inside.mkdir()
    monkeypatch.setenv(sources.SOURCE_ROOTS_ENV, str(inside))
    return inside


def test_paths_outside_the_roots_get_one_message(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"x" * 100)
    messages = set()
    for path in (
        "/etc/passwd",
        "/etc/shadow",
        "/etc/no-such-file.key",
        str(outside),
        str(tmp_path / "missing.mp4"),
        f"{root}/../outside.mp4",
        f"{root}/../missing.mp4",
        str(tmp_path),
    ):
        with pytest.raises(InputError) as exc:
            sources.fetch_source(path, tmp_path / "work")
        messages.add(str(exc.value))
    assert messages == {sources.PATH_NOT_ALLOWED}


def test_symlink_out_of_a_root_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"x" * 100)
    (root / "link.mp4").symlink_to(outside)
    (root / "passwd.mp4").symlink_to("/etc/passwd")
    (root / "dir").symlink_to(tmp_path)
    for name in ("link.mp4", "passwd.mp4", "dir/secret.mp4"):
        with pytest.raises(InputError) as exc:
            sources.fetch_source(str(root / name), tmp_path / "work")
        assert str(exc.value) == sources.PATH_NOT_ALLOWED
    inside = root / "real.mp4"
    inside.write_bytes(b"y" * 10)
    (root / "ok.mp4").symlink_to(inside)
    assert sources.fetch_source(str(root / "ok.mp4"), tmp_path / "work") == inside.resolve()


def test_inside_a_root_files_are_told_apart(root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        sources.fetch_source(str(root / "missing.mp4"), tmp_path / "work")
    (root / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="0 bytes"):
        sources.fetch_source(str(root / "empty.mp4"), tmp_path / "work")


def test_default_roots_are_the_data_folder_and_the_inbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(sources.SOURCE_ROOTS_ENV, raising=False)
    monkeypatch.setenv("VIDSEARCH_DATA_DIR", str(tmp_path / "data"))
    assert sources.source_roots() == [(tmp_path / "data").resolve(), (sources.REPO_ROOT / "ingest").resolve()]
    monkeypatch.delenv("VIDSEARCH_DATA_DIR")
    assert sources.source_roots()[0] == (sources.REPO_ROOT / "data").resolve()


# --- download bounds --------------------------------------------------------------------------------


class _BytesHandler(http.server.BaseHTTPRequestHandler):
    """/bytes/N: N bytes with Content-Length; /endless: bytes without a length until the client goes;
    /trickle: one byte every 0.2 s. `sent` counts the bytes written by the last response."""

    sent = 0
    hosts: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).hosts.append(self.headers.get("Host", ""))
        type(self).sent = 0
        try:
            if self.path.startswith("/bytes/"):
                size = int(self.path.rsplit("/", 1)[1])
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                self._write(size, 1 << 16)
            elif self.path == "/endless":
                self.send_response(200)
                self.end_headers()
                self._write(10**12, 1 << 16)
            elif self.path == "/trickle":
                self.send_response(200)
                self.end_headers()
                for _ in range(10_000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    type(self).sent += 1
                    time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _write(self, size: int, chunk: int) -> None:
        left = size
        while left > 0:
            n = min(chunk, left)
            self.wfile.write(b"\0" * n)
            type(self).sent += n
            left -= n


@pytest.fixture
def byte_server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BytesHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"  # loopback: allow-listed by tests/conftest.py
    httpd.shutdown()
    httpd.server_close()


def test_download_without_length_stops_at_the_cap(
    byte_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = 3 * 1024 * 1024
    monkeypatch.setenv(sources.MAX_SOURCE_BYTES_ENV, str(cap))  # the default cap is the setting
    with pytest.raises(InputError, match="larger than the limit") as exc:
        sources.fetch_source(f"{byte_server}/endless", tmp_path)
    assert sources.MAX_SOURCE_BYTES_ENV in str(exc.value)
    time.sleep(0.3)
    # The server stops once the client hangs up: at most the cap plus what the socket buffers held.
    assert _BytesHandler.sent < cap + 16 * 1024 * 1024
    assert not list(tmp_path.iterdir())


def test_declared_length_over_the_cap_is_refused_before_reading(byte_server: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="larger than the limit"):
        sources.fetch_source(f"{byte_server}/bytes/{10**11}", tmp_path, max_bytes=10**6)


def test_default_cap_is_20_gib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sources.MAX_SOURCE_BYTES_ENV, raising=False)
    assert sources.max_source_bytes() == 20 * 1024**3


def test_trickling_server_hits_the_total_deadline(
    byte_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(sources.SOURCE_DEADLINE_ENV, "1.5")
    started = time.monotonic()
    with pytest.raises(InputError, match="took longer than 1.5 s"):
        sources.fetch_source(f"{byte_server}/trickle", tmp_path)
    assert time.monotonic() - started < 5  # each read is well within the per-read timeout
    assert not list(tmp_path.iterdir())


# --- secrets in URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pass@example.org/v.mp4", "https://example.org/v.mp4"),
        (
            "https://b.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2026"
            "&X-Amz-Signature=abc123&X-Amz-Security-Token=tok&X-Amz-Expires=600",
            "https://b.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED"
            "&X-Amz-Signature=REDACTED&X-Amz-Security-Token=REDACTED&X-Amz-Expires=600",
        ),
        ("https://cdn.example.org/v.mp4?id=7&token=s3cr3t#frag", "https://cdn.example.org/v.mp4?id=7&token=REDACTED"),
        (
            "https://x.blob.core.windows.net/c/v.mp4?sv=2022&sig=zzz",
            "https://x.blob.core.windows.net/c/v.mp4?sv=2022&sig=REDACTED",
        ),
        (
            "https://example.org/v.mp4?Signature=a&Key-Pair-Id=b&Policy=c",
            "https://example.org/v.mp4?Signature=REDACTED&Key-Pair-Id=REDACTED&Policy=REDACTED",
        ),
        ("https://example.org/v.mp4?api_key=k&page=2", "https://example.org/v.mp4?api_key=REDACTED&page=2"),
        ("https://example.org/v.mp4?x=1", "https://example.org/v.mp4?x=1"),
        ("/data/inbox/a.mp4", "/data/inbox/a.mp4"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert sources.redact_url(url) == expected


def test_credentials_are_sent_but_never_in_messages(byte_server: str, tmp_path: Path) -> None:
    local = sources.fetch_source(f"http://alice:wonder@{byte_server[7:]}/bytes/10", tmp_path)
    assert local.stat().st_size == 10
    with pytest.raises(InputError) as exc:
        sources.fetch_source(f"http://alice:wonder@{byte_server[7:]}/missing?sig=abc", tmp_path)
    assert "wonder" not in str(exc.value) and "abc" not in str(exc.value)


def test_pipeline_records_and_logs_the_source_without_secrets(
    byte_server: str, cfr_video: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pipeline.probe_video: the run, its params, the video and the log line carry the redacted URL."""
    from vidsearch import pipeline
    from vidsearch.params import IngestParams

    class Catalog:
        def __init__(self) -> None:
            self.calls: list[tuple[str, tuple, dict]] = []

        def __getattr__(self, name: str):
            return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    catalog = Catalog()
    svc = pipeline.Services(catalog=catalog, index=lambda: None, storage_root=f"file://{tmp_path / 'objects'}")  # type: ignore[arg-type]

    served = tmp_path / "served.mp4"
    served.write_bytes(cfr_video.read_bytes())
    _BytesHandler.video = served  # type: ignore[attr-defined]
    monkeypatch.setattr(_BytesHandler, "do_GET", _serve_video, raising=True)
    secret_url = f"http://bob:hunter2@{byte_server[7:]}/clip.mp4?X-Amz-Signature=deadbeef&id=3"
    params = IngestParams(source=secret_url)
    with caplog.at_level(logging.INFO):
        out = pipeline.probe_video(svc, "run1", "video_ingest", params)
    assert out.manifest.source == f"{byte_server}/clip.mp4?X-Amz-Signature=REDACTED&id=3"
    recorded = repr(catalog.calls)
    assert "hunter2" not in recorded and "deadbeef" not in recorded, recorded
    assert any(name == "upsert_video" for name, _, _ in catalog.calls)
    assert "hunter2" not in caplog.text and "deadbeef" not in caplog.text
    assert "REDACTED" in caplog.text


def _serve_video(self: http.server.BaseHTTPRequestHandler) -> None:
    data = type(self).video.read_bytes()  # type: ignore[attr-defined]
    if self.headers.get("Authorization") is None:
        self.send_error(401)
        return
    self.send_response(200)
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)
