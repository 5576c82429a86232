"""Fetch a user-given video source into a local file.

Accepted sources:

* a local path (no scheme): must exist, be a regular file and be non-empty; returned as is (no copy);
* `http://` / `https://` URLs: downloaded (streamed, with connect/read timeouts) into `workdir`;
* `s3://` URIs: downloaded through `storage` (fsspec/s3fs, endpoint from the environment).

Everything else is rejected with `InputError` and a one-line reason: `file://` URLs (local files are
given as plain paths; a URL form would let web-facing callers name arbitrary server files), other
schemes, and URLs whose host resolves to a link-local address (169.254.0.0/16, fe80::/10: cloud
metadata services live there). Every address the host resolves to is checked, and redirects are
followed by hand (at most `MAX_REDIRECTS`) so each target is checked too. Loopback and private
addresses are allowed on purpose (local servers, tests, MinIO next door).

Limitation: the address check and the connection resolve the name separately, so a DNS server that
answers differently within milliseconds (DNS rebinding) could slip past; deployments exposed to
untrusted users should also block 169.254.0.0/16 at the network level.

Errors: a missing file, a bad scheme, an unresolvable host, a refused connection or an HTTP 4xx is the
caller's input (`InputError`); HTTP 5xx, timeouts and a connection lost mid-download are worth
retrying (`TransientError`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin, urlparse, urlunparse

import requests

from vidsearch.errors import InputError, TransientError
from vidsearch.stores import storage

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
MAX_REDIRECTS = 5
_CHUNK = 1 << 20
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


def redact(url: str) -> str:
    """A URL fit for messages and logs: no credentials, no query string or fragment (signatures)."""
    parts = urlparse(url)
    return urlunparse((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", "", ""))


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"cannot resolve host {host!r}: {exc}") from exc
    found = []
    for *_, sockaddr in infos:
        # IPv6 link-local results carry a scope ("fe80::1%eth0"); the address is what matters.
        found.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
    return found


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    return address.is_link_local or address.is_multicast or address.is_unspecified


def check_url(url: str) -> None:
    """Raise `InputError` unless `url` is http(s) and its host resolves only to allowed addresses."""
    parts = urlparse(url)
    if parts.scheme not in ("http", "https"):
        raise InputError(f"unsupported URL scheme {parts.scheme!r} in {redact(url)!r}")
    host = parts.hostname
    if not host:
        raise InputError(f"URL has no host: {redact(url)!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InputError(f"bad port in URL {redact(url)!r}") from exc
    for address in _addresses(host, port):
        if _forbidden(address):
            raise InputError(f"URL host {host!r} resolves to a forbidden (link-local) address {address}")


def _target_name(url: str) -> str:
    """Local file name for a download; keeps a short alphanumeric suffix (helps humans, not ffmpeg)."""
    suffix = PurePosixPath(urlparse(url).path).suffix
    return "source" + (suffix.lower() if _SAFE_SUFFIX.match(suffix) else "")


def _download_http(url: str, workdir: Path, max_bytes: int | None) -> Path:
    session = requests.Session()
    current = url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(current)
            try:
                response = session.get(
                    current,
                    stream=True,
                    allow_redirects=False,
                    timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
                    headers={"User-Agent": "vidsearch/0.1"},
                )
            except requests.exceptions.Timeout as exc:
                raise TransientError(f"timed out connecting to {redact(current)!r}") from exc
            except requests.exceptions.ConnectionError as exc:
                raise InputError(f"cannot reach {redact(current)!r}: {_short(exc)}") from exc
            except requests.exceptions.RequestException as exc:
                raise InputError(f"bad URL {redact(current)!r}: {_short(exc)}") from exc
            with response:
                if response.is_redirect:
                    location = response.headers.get("Location", "")
                    current = urljoin(current, location)
                    continue
                if 400 <= response.status_code < 500:
                    raise InputError(f"HTTP {response.status_code} fetching {redact(current)!r}")
                if response.status_code >= 500:
                    raise TransientError(f"HTTP {response.status_code} fetching {redact(current)!r}")
                if response.status_code != 200:
                    raise InputError(f"unexpected HTTP {response.status_code} fetching {redact(current)!r}")
                return _save_body(response, current, workdir, max_bytes)
        raise InputError(f"too many redirects (more than {MAX_REDIRECTS}) fetching {redact(url)!r}")
    finally:
        session.close()


def _save_body(response: requests.Response, url: str, workdir: Path, max_bytes: int | None) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / _target_name(url)
    partial = target.with_name(target.name + ".part")
    expected = response.headers.get("Content-Length")
    written = 0
    try:
        with partial.open("wb") as fh:
            for chunk in response.iter_content(_CHUNK):
                written += len(chunk)
                if max_bytes is not None and written > max_bytes:
                    raise InputError(f"{redact(url)!r} is larger than the limit of {max_bytes} bytes")
                fh.write(chunk)
    except requests.exceptions.RequestException as exc:
        partial.unlink(missing_ok=True)
        raise TransientError(f"download of {redact(url)!r} interrupted: {_short(exc)}") from exc
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
        raise TransientError(f"download of {redact(url)!r} incomplete: {written} of {expected} bytes")
    if written == 0:
        partial.unlink(missing_ok=True)
        raise InputError(f"empty download: {redact(url)!r} returned 0 bytes")
    os.replace(partial, target)
    return target


def _download_s3(uri: str, workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / _target_name(uri)
    partial = target.with_name(target.name + ".part")
    try:
        with storage.open_uri(uri) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    except FileNotFoundError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"no such object: {redact(uri)!r}") from exc
    except PermissionError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"access denied to {redact(uri)!r}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if partial.stat().st_size == 0:
        partial.unlink(missing_ok=True)
        raise InputError(f"empty object: {redact(uri)!r} is 0 bytes")
    os.replace(partial, target)
    return target


def _short(exc: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error as one short line."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = " ".join(str(exc).split())
    text = re.sub(r"<[^>]*object at 0x[0-9a-f]+>:?\s*", "", text)
    if isinstance(exc, ConnectionRefusedError) or "Connection refused" in text:
        return "connection refused"
    return text[:200] or type(exc).__name__


def fetch_source(source: str, workdir: Path, *, max_bytes: int | None = None) -> Path:
    """A local file holding `source` (see the module docstring for what is accepted).

    Local paths are returned unchanged; downloads land in `workdir` (created if needed) as
    `source<.ext>`, written to a `.part` file first so an interrupted download never looks complete.
    `max_bytes` caps the size of downloads (None: no cap). Raises `InputError` or `TransientError`
    with a one-line message.
    """
    source = source.strip()
    if not source:
        raise InputError("empty source")
    if "://" not in source:
        path = Path(source).expanduser()
        if not path.exists():
            raise InputError(f"no such file: {source!r}")
        if not path.is_file():
            raise InputError(f"not a regular file: {source!r}")
        if path.stat().st_size == 0:
            raise InputError(f"empty file: {source!r} is 0 bytes")
        return path
    scheme = urlparse(source).scheme.lower()
    if scheme == "file":
        raise InputError("file:// URLs are not accepted; give a local path instead")
    if scheme in ("http", "https"):
        return _download_http(source, Path(workdir), max_bytes)
    if scheme == "s3":
        return _download_s3(source, Path(workdir))
    raise InputError(f"unsupported source scheme {scheme!r} (use a local path, http(s):// or s3://)")
