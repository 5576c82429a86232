"""Fetch a user-given video source into a local file, under one policy for paths and URLs.

Accepted sources:

* a local path (no scheme): must resolve (symlinks followed) to a regular, non-empty file inside one
  of the source roots (`source_roots()`); returned resolved (no copy);
* `http://` / `https://` URLs allowed by the URL policy (`check_url`): downloaded into `workdir`;
* `s3://` URIs: downloaded through `storage` (fsspec/s3fs, endpoint from the environment).

Everything else is rejected with `InputError` and a one-line reason: `file://` URLs (local files are
given as plain paths) and other schemes.

**Local paths** (`VIDSEARCH_SOURCE_ROOTS`, `os.pathsep`-separated; default: the data folder,
`$VIDSEARCH_DATA_DIR` or `<repo>/data`, and the inbox `<repo>/ingest`). The path is resolved first
(`..` and symlinks, the file's own included), then must lie inside a resolved root. A path outside
every root gets one message (`PATH_NOT_ALLOWED`) whether or not it exists, so a caller cannot probe
which server files exist; only inside a root are "no such file", "not a regular file" and "0 bytes"
told apart.

**URLs** (the URL policy, shared with channels' feeds): the URL is parsed once, with urllib3's parser
(the one that connects); its host is resolved once; every address must be allowed; and the
connection goes to the first address checked (Host header and TLS SNI/certificate name stay the
URL's host name), so nothing is resolved again between the check and the connection (no DNS
rebinding). Redirects (at most `MAX_REDIRECTS`) are followed by hand and each target goes through the
same check. An address is refused when it is not globally routable (loopback, private, link-local,
shared 100.64/10, reserved, documentation, unspecified, ...), multicast, a cloud metadata address
(`METADATA_ADDRESSES`, never allowed), or an IPv6 form embedding an IPv4 address that is refused
(IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16, Teredo).
Private hosts are allowed only when listed in `VIDSEARCH_ALLOWED_PRIVATE_HOSTS` (comma-separated host
names, IP addresses or CIDR networks, e.g. `minio,10.0.5.0/24`). A refused URL, an unresolvable host
and a refused redirect all get the same message (`URL_NOT_ALLOWED`): no answer tells an internal
name or address from a missing one. Proxies from the environment are not used.

**Bounds**: a download stops at `max_bytes` (default `VIDSEARCH_MAX_SOURCE_BYTES`, 20 GiB; counted
after content decoding) and at a total deadline (`VIDSEARCH_SOURCE_DEADLINE_S`, default 3600 s; a
watchdog closes the connection, so a server trickling bytes cannot hold a worker), besides the
connect and per-read timeouts.

**Secrets**: `redact_url` removes the user info and masks credential-like query parameters (signed
URLs); it is what is logged, recorded in the catalog and returned as a video's source. Messages use
`redact` (no query at all).

Errors: a bad scheme, a refused URL or path, a missing file, a refused connection or an HTTP 4xx is
the caller's input (`InputError`); HTTP 5xx, timeouts and a connection lost mid-download are worth
retrying (`TransientError`); a download past the deadline or the size cap is `InputError`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import threading
import time
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationParseError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import make_headers, parse_url

from vidsearch.errors import InputError, PermanentError, TransientError
from vidsearch.settings import number_from_env
from vidsearch.stores import storage

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
MAX_REDIRECTS = 5
_CHUNK = 1 << 20
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")

REPO_ROOT = Path(__file__).resolve().parents[3]
SOURCE_ROOTS_ENV = "VIDSEARCH_SOURCE_ROOTS"
ALLOWED_PRIVATE_HOSTS_ENV = "VIDSEARCH_ALLOWED_PRIVATE_HOSTS"
MAX_SOURCE_BYTES_ENV = "VIDSEARCH_MAX_SOURCE_BYTES"
SOURCE_DEADLINE_ENV = "VIDSEARCH_SOURCE_DEADLINE_S"
DEFAULT_MAX_SOURCE_BYTES = 20 * 1024**3
DEFAULT_SOURCE_DEADLINE_S = 3600.0

URL_NOT_ALLOWED = (
    "source URL not allowed: it must be an http(s) URL of a public host that resolves "
    f"(private hosts need {ALLOWED_PRIVATE_HOSTS_ENV})"
)
PATH_NOT_ALLOWED = f"source path not allowed: local sources must be files inside {SOURCE_ROOTS_ENV}"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services: refused even when a private-host allow-list entry covers them.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.169.123",  # AWS time sync
        "169.254.169.253",  # AWS DNS
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
    )
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

# Query parameters whose value is a credential (compared lowercased): signed URLs of S3, GCS, Azure,
# CloudFront and most APIs. Names containing one of `_SECRET_PARTS` count too.
_SECRET_PARAMS = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "signature",
        "sig",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "auth",
        "authorization",
        "key",
        "api_key",
        "apikey",
        "awsaccesskeyid",
        "key-pair-id",
        "policy",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "session",
        "sessionid",
        "sas",
        "jwt",
        "code",
    }
)
_SECRET_PARTS = ("token", "secret", "signature", "password", "credential", "apikey", "api_key", "auth")
REDACTED = "REDACTED"


# --- secrets in URLs --------------------------------------------------------------------------------


def _secret_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_PARAMS or any(part in lowered for part in _SECRET_PARTS)


def redact(url: str) -> str:
    """A URL fit for error messages: no credentials, no query string or fragment (signatures)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


def redact_url(source: str) -> str:
    """`source` fit for logs, the catalog and users: for a URL, no user info, no fragment, and the
    value of every credential-like query parameter replaced by `REDACTED` (the other parameters,
    which may select the video, are kept). Local paths are returned unchanged."""
    source = source.strip()
    if "://" not in source:
        return source
    parts = urlsplit(source)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_param(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if _secret_param(k) else v) for k, v in pairs], quote_via=quote, safe="/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


# --- settings ---------------------------------------------------------------------------------------


def max_source_bytes() -> int:
    """The default download cap: `VIDSEARCH_MAX_SOURCE_BYTES` (20 GiB)."""
    return number_from_env(MAX_SOURCE_BYTES_ENV, DEFAULT_MAX_SOURCE_BYTES, int, positive=True, error=PermanentError)


def source_deadline_s() -> float:
    """The total time a download may take: `VIDSEARCH_SOURCE_DEADLINE_S` (3600 s)."""
    return number_from_env(
        SOURCE_DEADLINE_ENV, float(DEFAULT_SOURCE_DEADLINE_S), float, positive=True, error=PermanentError
    )


def source_roots() -> list[Path]:
    """The folders local sources may come from, resolved (see the module docstring)."""
    raw = os.environ.get(SOURCE_ROOTS_ENV, "")
    if raw.strip():
        entries = [Path(e).expanduser() for e in raw.split(os.pathsep) if e.strip()]
    else:
        data = os.environ.get("VIDSEARCH_DATA_DIR", "").strip()
        entries = [Path(data).expanduser() if data else REPO_ROOT / "data", REPO_ROOT / "ingest"]
    return [e.resolve() for e in entries if e.is_absolute()]


def _allow_list() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names: set[str] = set()
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in os.environ.get(ALLOWED_PRIVATE_HOSTS_ENV, "").split(","):
        entry = entry.strip().lower().strip("[]")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.rstrip("."))
    return names, networks


# --- local paths ------------------------------------------------------------------------------------


def check_path(source: str) -> Path:
    """The resolved local file `source` names, if it lies inside a source root and is a regular,
    non-empty file; else `InputError` (`PATH_NOT_ALLOWED` for anything outside the roots)."""
    try:
        path = Path(source).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):  # symlink loop, NUL byte
        raise InputError(PATH_NOT_ALLOWED) from None
    if not any(path == root or path.is_relative_to(root) for root in source_roots()):
        raise InputError(PATH_NOT_ALLOWED)
    name = path.name
    if not path.exists():
        raise InputError(f"no such file: {name!r}")
    if not path.is_file():
        raise InputError(f"not a regular file: {name!r}")
    if path.stat().st_size == 0:
        raise InputError(f"empty file: {name!r} is 0 bytes")
    return path


# --- the URL policy ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CheckedURL:
    """A URL that passed the policy: what to connect to (`address`) and what to say there."""

    url: str  # as parsed (urllib3), with user info
    scheme: str
    host: str  # lowercase host name or IP literal (no brackets)
    port: int
    request_uri: str  # path and query
    auth: str | None  # "user:password" from the URL, sent as basic auth to this host only
    address: str  # the checked IP the connection goes to

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if any(address in net for net in _NAT64):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def address_allowed(address: IPAddress, host: str = "") -> bool:
    """The address rule of the module docstring; `host` is the URL's host, for the allow-list."""
    if address in METADATA_ADDRESSES or address.is_multicast or address.is_unspecified:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if address.ipv4_mapped is not None:
            return address_allowed(address.ipv4_mapped, host)
        if embedded and not all(address_allowed(v4, host) for v4 in embedded):
            return False
    if address.is_global:
        return True
    names, networks = _allow_list()
    return host.rstrip(".") in names or any(address in net for net in networks if net.version == address.version)


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        raise InputError(URL_NOT_ALLOWED) from None
    found = []
    for *_, sockaddr in infos:
        # IPv6 link-local results carry a scope ("fe80::1%eth0"); the address is what matters.
        found.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
    if not found:
        raise InputError(URL_NOT_ALLOWED)
    return found


def check_url(url: str, *, resolve: bool = True) -> CheckedURL:
    """Parse `url` (urllib3's parser), resolve its host once and check every address; raise
    `InputError(URL_NOT_ALLOWED)` unless it is an allowed http(s) URL. Connect to `.address`.

    `resolve=False` (listing feed entries, long before the download) checks what needs no DNS: the
    scheme, IP literals and `localhost` names; `.address` is then empty. The fetch checks it all."""
    if any(ord(c) < 0x21 or c == "\x7f" for c in url):  # control characters, spaces
        raise InputError(URL_NOT_ALLOWED)
    try:
        parsed = parse_url(url)
    except (LocationParseError, ValueError):
        raise InputError(URL_NOT_ALLOWED) from None
    scheme = (parsed.scheme or "").lower()
    host = (parsed.host or "").lower().strip("[]")
    if scheme not in ("http", "https") or not host:
        raise InputError(URL_NOT_ALLOWED)
    port = parsed.port or (443 if scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    elif resolve:
        addresses = _resolve(host, port)
    else:
        addresses = []
        if host.rstrip(".") == "localhost" or host.rstrip(".").endswith(".localhost"):  # RFC 6761: loopback
            addresses = [ipaddress.ip_address("127.0.0.1")]
    if not all(address_allowed(a, host) for a in addresses):
        raise InputError(URL_NOT_ALLOWED)
    return CheckedURL(
        url=parsed.url,
        scheme=scheme,
        host=host,
        port=port,
        request_uri=parsed.request_uri,
        auth=parsed.auth,
        address=str(addresses[0]) if resolve and addresses else "",
    )


def _ca_bundle() -> str | None:
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        import certifi
    except ImportError:  # pragma: no cover - requests depends on it
        return None
    return str(certifi.where())


def _pool(target: CheckedURL, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    """A connection pool to the checked address only; TLS verifies the URL's host name."""
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=_ca_bundle(),
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False, maxsize=1)


# --- downloads --------------------------------------------------------------------------------------


def _target_name(url: str) -> str:
    """Local file name for a download; keeps a short alphanumeric suffix (helps humans, not ffmpeg)."""
    suffix = PurePosixPath(urlsplit(url).path).suffix
    return "source" + (suffix.lower() if _SAFE_SUFFIX.fullmatch(suffix) else "")


class _Deadline:
    """Closes a response's connection when the total download time is up (reads then fail)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = threading.Event()
        self._timer: threading.Timer | None = None

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self, url: str) -> None:
        if self.expired.is_set() or self.remaining() <= 0:
            self.expired.set()
            raise InputError(f"download of {redact(url)!r} took longer than {self.seconds:g} s ({SOURCE_DEADLINE_ENV})")

    def watch(self, response: urllib3.BaseHTTPResponse) -> None:
        def fire() -> None:
            self.expired.set()
            try:
                response.shutdown()
            except Exception:  # noqa: BLE001 - best effort: the next read fails or the check fires
                pass

        self.cancel()
        self._timer = threading.Timer(max(self.remaining(), 0.0), fire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _request(
    target: CheckedURL, deadline: _Deadline, display: str
) -> tuple[urllib3.HTTPConnectionPool, urllib3.BaseHTTPResponse]:
    remaining = max(deadline.remaining(), 0.001)
    timeout = urllib3.Timeout(connect=min(CONNECT_TIMEOUT_S, remaining), read=min(READ_TIMEOUT_S, remaining))
    headers = {"Host": target.host_header, "User-Agent": "vidsearch/0.1", "Accept-Encoding": "identity"}
    if target.auth:
        headers.update(make_headers(basic_auth=target.auth))
    pool = _pool(target, timeout)
    try:
        response = pool.urlopen(
            "GET",
            target.request_uri,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            decode_content=True,
            assert_same_host=False,
        )
    except NewConnectionError as exc:  # (a subclass of ConnectTimeoutError in urllib3 2)
        pool.close()
        if isinstance(exc.__cause__ or exc.__context__, (TimeoutError, socket.timeout)):
            raise TransientError(f"timed out connecting to {display!r}") from exc
        raise InputError(f"cannot reach {display!r}: {_short(exc)}") from exc
    except (ConnectTimeoutError, ReadTimeoutError) as exc:
        pool.close()
        deadline.check(display)
        raise TransientError(f"timed out connecting to {display!r}") from exc
    except SSLError as exc:
        pool.close()
        raise InputError(f"TLS error with {display!r}: {_short(exc)}") from exc
    except (ProtocolError, OSError) as exc:
        pool.close()
        raise InputError(f"cannot reach {display!r}: {_short(exc)}") from exc
    except HTTPError as exc:
        pool.close()
        raise InputError(f"bad URL {display!r}: {_short(exc)}") from exc
    return pool, response


def _download_http(url: str, workdir: Path, max_bytes: int) -> Path:
    deadline = _Deadline(source_deadline_s())
    current = url
    first: CheckedURL | None = None
    for _ in range(MAX_REDIRECTS + 1):
        target = check_url(current)
        if first is None:
            first = target
        elif target.auth is None and (target.scheme, target.host, target.port) == (
            first.scheme,
            first.host,
            first.port,
        ):
            # The URL's credentials follow redirects on the same origin only (as requests does).
            target = dataclasses.replace(target, auth=first.auth)
        display = redact(target.url)
        deadline.check(display)
        pool, response = _request(target, deadline, display)
        try:
            deadline.watch(response)
            status = response.status
            if status in (301, 302, 303, 307, 308):
                location = response.headers.get("Location", "")
                if not location:
                    raise InputError(f"redirect without a Location from {display!r}")
                current = urljoin(target.url, location)
                continue
            if 400 <= status < 500:
                raise InputError(f"HTTP {status} fetching {display!r}")
            if status >= 500:
                raise TransientError(f"HTTP {status} fetching {display!r}")
            if status != 200:
                raise InputError(f"unexpected HTTP {status} fetching {display!r}")
            return _save_body(response, target.url, workdir, max_bytes, deadline)
        finally:
            deadline.cancel()
            response.release_conn()
            response.close()
            pool.close()
    raise InputError(f"too many redirects (more than {MAX_REDIRECTS}) fetching {redact(url)!r}")


def _save_body(
    response: urllib3.BaseHTTPResponse, url: str, workdir: Path, max_bytes: int, deadline: _Deadline
) -> Path:
    display = redact(url)
    expected = response.headers.get("Content-Length")
    if expected is not None and expected.isdigit() and int(expected) > max_bytes:
        raise InputError(f"{display!r} is larger than the limit of {max_bytes} bytes ({MAX_SOURCE_BYTES_ENV})")
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / _target_name(url)
    partial = target.with_name(target.name + ".part")
    written = 0
    try:
        with partial.open("wb") as fh:
            for chunk in response.stream(_CHUNK):
                deadline.check(url)
                written += len(chunk)
                if written > max_bytes:
                    raise InputError(
                        f"{display!r} is larger than the limit of {max_bytes} bytes ({MAX_SOURCE_BYTES_ENV})"
                    )
                fh.write(chunk)
        deadline.check(url)
    except (HTTPError, OSError) as exc:
        partial.unlink(missing_ok=True)
        deadline.check(url)
        raise TransientError(f"download of {display!r} interrupted: {_short(exc)}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if (
        expected is not None
        and expected.isdigit()
        and int(expected) != written
        and not response.headers.get("Content-Encoding")
    ):
        partial.unlink(missing_ok=True)
        raise TransientError(f"download of {display!r} incomplete: {written} of {expected} bytes")
    if written == 0:
        partial.unlink(missing_ok=True)
        raise InputError(f"empty download: {display!r} returned 0 bytes")
    os.replace(partial, target)
    return target


def _download_s3(uri: str, workdir: Path, max_bytes: int) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / _target_name(uri)
    partial = target.with_name(target.name + ".part")
    written = 0
    try:
        with storage.open_uri(uri) as src, partial.open("wb") as dst:
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                written += len(chunk)
                if written > max_bytes:
                    raise InputError(
                        f"{redact(uri)!r} is larger than the limit of {max_bytes} bytes ({MAX_SOURCE_BYTES_ENV})"
                    )
                dst.write(chunk)
    except FileNotFoundError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"no such object: {redact(uri)!r}") from exc
    except PermissionError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"access denied to {redact(uri)!r}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if written == 0:
        partial.unlink(missing_ok=True)
        raise InputError(f"empty object: {redact(uri)!r} is 0 bytes")
    os.replace(partial, target)
    return target


def _short(exc: BaseException) -> str:
    """The innermost cause of a urllib3 error as one short line."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = " ".join(str(exc).split())
    text = re.sub(r"<[^>]*object at 0x[0-9a-f]+>:?\s*", "", text)
    if isinstance(exc, ConnectionRefusedError) or "Connection refused" in text:
        return "connection refused"
    return text[:200] or type(exc).__name__


def fetch_source(source: str, workdir: Path, *, max_bytes: int | None = None) -> Path:
    """A local file holding `source` (see the module docstring for what is accepted).

    Local paths are returned resolved; downloads land in `workdir` (created if needed) as
    `source<.ext>`, written to a `.part` file first so an interrupted download never looks complete.
    `max_bytes` caps the size of downloads (None: `max_source_bytes()`). Raises `InputError` or
    `TransientError` with a one-line message.
    """
    source = source.strip()
    if not source:
        raise InputError("empty source")
    cap = max_source_bytes() if max_bytes is None else max_bytes
    if "://" not in source:
        return check_path(source)
    scheme = urlsplit(source).scheme.lower()
    if scheme == "file":
        raise InputError("file:// URLs are not accepted; give a local path instead")
    if scheme in ("http", "https"):
        return _download_http(source, Path(workdir), cap)
    if scheme == "s3":
        return _download_s3(source, Path(workdir), cap)
    raise InputError(f"unsupported source scheme {scheme!r} (use a local path, http(s):// or s3://)")


__all__ = [
    "METADATA_ADDRESSES",
    "PATH_NOT_ALLOWED",
    "URL_NOT_ALLOWED",
    "CheckedURL",
    "address_allowed",
    "check_path",
    "check_url",
    "fetch_source",
    "max_source_bytes",
    "redact",
    "redact_url",
    "source_deadline_s",
    "source_roots",
]
