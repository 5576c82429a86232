"""Object storage by URI: `file://` (or a plain path) and `s3://`, through fsspec.

Every stage reads and writes large data through these few functions, so the same code runs against a
local folder on a laptop and a bucket in production. S3 credentials come from the standard AWS
environment variables; `AWS_ENDPOINT_URL` (or `VIDSEARCH_S3_ENDPOINT_URL`) points at MinIO or another
S3-compatible server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import fsspec

from vidsearch.errors import TransientError


def _storage_options(protocol: str) -> dict[str, Any]:
    if protocol in ("s3", "s3a"):
        endpoint = os.environ.get("VIDSEARCH_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
        # SigV4 everywhere, presigned URLs included (botocore may presign with SigV2 in us-east-1, which
        # newer regions and some S3-compatible servers refuse).
        options: dict[str, Any] = {"config_kwargs": {"signature_version": "s3v4"}}
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
        return options
    return {}


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for `uri` and the path inside it."""
    protocol = urlparse(uri).scheme or "file"
    fs, path = fsspec.core.url_to_fs(uri, **_storage_options(protocol))
    return fs, path


def is_local(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")


def local_path(uri: str) -> Path:
    """The local path of a `file://` URI or plain path."""
    if not is_local(uri):
        raise ValueError(f"not a local URI: {uri}")
    return Path(urlparse(uri).path if uri.startswith("file://") else uri)


def join(root: str, *parts: str) -> str:
    """`root/part/part`, without doubling slashes."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


def _transient(exc: Exception) -> bool:
    # Local filesystem errors other than timeouts are the caller's problem; anything network-shaped is
    # worth a retry.
    return isinstance(exc, (TimeoutError, ConnectionError)) or type(exc).__module__.startswith(
        ("botocore", "aiobotocore", "aiohttp")
    )


@contextlib.contextmanager
def _storage_errors(uri: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        raise
    except Exception as exc:
        if _transient(exc):
            raise TransientError(f"object storage unavailable for {uri}: {exc}") from exc
        raise


def upload(local: str | os.PathLike[str], uri: str) -> str:
    """Copy a local file to `uri` (atomic for local targets). Returns `uri`."""
    with _storage_errors(uri):
        if is_local(uri):
            target = local_path(uri)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
            shutil.copyfile(local, tmp)
            os.replace(tmp, target)
        else:
            fs, path = filesystem(uri)
            fs.put_file(str(local), path)
    return uri


def write_bytes(uri: str, data: bytes) -> str:
    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(data)
        tmp.flush()
        return upload(tmp.name, uri)


def read_bytes(uri: str) -> bytes:
    with _storage_errors(uri):
        fs, path = filesystem(uri)
        return fs.cat_file(path)


@contextlib.contextmanager
def open_uri(uri: str, mode: str = "rb") -> Iterator[IO[Any]]:
    """Open for reading (random access works on both local files and S3 objects)."""
    with _storage_errors(uri):
        fs, path = filesystem(uri)
        with fs.open(path, mode) as fh:
            yield fh


@contextlib.contextmanager
def local_file(uri: str, suffix: str = "") -> Iterator[Path]:
    """A local path holding the object's bytes: the file itself when local, else a temporary copy."""
    if is_local(uri):
        path = local_path(uri)
        if not path.exists():
            raise FileNotFoundError(uri)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="vidsearch-") as tmp:
        target = Path(tmp) / f"object{suffix}"
        with _storage_errors(uri):
            fs, remote = filesystem(uri)
            fs.get_file(remote, str(target))
        yield target


@contextlib.contextmanager
def media_input(uri: str, expires_s: int = 900) -> Iterator[Path | str]:
    """What ffmpeg can read the object at `uri` from without copying all of it: the file itself when
    local; for S3 a presigned HTTP(S) GET URL valid for `expires_s` seconds, which ffmpeg reads with
    ranged requests, fetching only what its seeks need (a segment's audio is seconds of a long source,
    and `local_file` would download the whole object for each segment); other schemes: a temporary copy.

    The URL is a credential while it lasts: pass it to ffmpeg only (`ffmpeg.url_input_args`), never log it.
    `FileNotFoundError` when the object is not there.
    """
    protocol = urlparse(uri).scheme
    if protocol not in ("s3", "s3a"):
        with local_file(uri, Path(urlparse(uri).path).suffix) as local:
            yield local
        return
    with _storage_errors(uri):
        fs, remote = filesystem(uri)
        if not fs.exists(remote):
            raise FileNotFoundError(uri)
        url = str(fs.url(remote, expires=expires_s))
    yield url


def size(uri: str) -> int:
    """The object's size in bytes (`FileNotFoundError` when it is not there)."""
    with _storage_errors(uri):
        fs, path = filesystem(uri)
        return int(fs.size(path))


def iter_range(uri: str, start: int, length: int, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
    """`length` bytes of the object from byte `start`, in chunks of at most `chunk_size`: one open and
    one seek (a ranged GET per block on S3), never the whole object in memory. Stops early if the
    object is shorter than asked (the caller checked its size)."""
    if start < 0 or length < 0 or chunk_size <= 0:
        raise ValueError(f"invalid range start={start} length={length} chunk_size={chunk_size}")
    with _storage_errors(uri):
        fs, path = filesystem(uri)
        # No read-ahead cache beyond the chunk: the bytes go straight to the client.
        options: dict[str, Any] = {} if is_local(uri) else {"block_size": chunk_size, "cache_type": "none"}
        with fs.open(path, "rb", **options) as fh:
            fh.seek(start)
            left = length
            while left > 0:
                data = fh.read(min(chunk_size, left))
                if not data:
                    return
                left -= len(data)
                yield data


def exists(uri: str) -> bool:
    with _storage_errors(uri):
        fs, path = filesystem(uri)
        return fs.exists(path)


def delete_prefix(uri: str) -> None:
    """Remove everything under `uri` (no error when nothing is there)."""
    with _storage_errors(uri):
        fs, path = filesystem(uri)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def list_prefix(uri: str) -> list[str]:
    """Object URIs under `uri`, sorted (empty when nothing is there)."""
    with _storage_errors(uri):
        fs, path = filesystem(uri)
        if not fs.exists(path):
            return []
        protocol = urlparse(uri).scheme
        found = sorted(fs.find(path))
        if is_local(uri):
            return [f"file://{p}" if uri.startswith("file://") else p for p in found]
        return [f"{protocol}://{p}" for p in found]
