"""Listing a channel's candidates inside a time window: a folder, an S3 prefix or a feed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import posixpath
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

from vidsearch.channels.config import UTC, Channel, ChannelUnavailable, as_utc
from vidsearch.channels.feeds import parse_feed, read_feed
from vidsearch.errors import InputError
from vidsearch.media import sources
from vidsearch.stores import storage

log = logging.getLogger(__name__)


_HASH_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Window:
    """A half-open time window [start, end); None on both sides means "any time" (a full scan)."""

    start: dt.datetime | None
    end: dt.datetime | None

    def __contains__(self, when: dt.datetime | None) -> bool:
        if self.start is None and self.end is None:
            return True
        if when is None:
            return True  # undated feed entries: candidates in every window, deduped by URL
        when = as_utc(when)
        return (self.start is None or when >= self.start) and (self.end is None or when < self.end)

    def __str__(self) -> str:
        if self.start is None and self.end is None:
            return "[any time]"
        fmt = lambda t: t.isoformat() if t else "…"  # noqa: E731
        return f"[{fmt(self.start)}, {fmt(self.end)})"


FULL_SCAN = Window(None, None)


def canonical_url(location: str) -> str:
    """The form a source is deduped on: `file://` + resolved absolute path for local files,
    `s3://bucket/key`, or an http(s) URL with lowercase scheme and host, no credentials, no default
    port, no fragment, and `/` for an empty path (the query is kept: it may select the video; the
    values of credential-like parameters are masked, `sources.redact_url`: a re-signed URL of the
    same object is the same item, and no signature is recorded or logged)."""
    location = location.strip()
    if "://" not in location:
        return "file://" + str(Path(location).expanduser().resolve())
    parts = urlsplit(sources.redact_url(location))
    scheme = parts.scheme.lower()
    if scheme == "s3":
        return f"s3://{parts.netloc}/{parts.path.lstrip('/')}"
    if scheme in ("http", "https"):
        host = (parts.hostname or "").lower()
        if ":" in host:
            host = f"[{host}]"
        port = parts.port
        if port and port != {"http": 80, "https": 443}[scheme]:
            host = f"{host}:{port}"
        return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))
    return location


def sha256_uri(uri: str) -> str:
    """SHA-256 of a local file (the probe's helper) or of an object in storage, streamed."""
    if storage.is_local(uri):
        from vidsearch.media.probe import sha256_file

        return sha256_file(storage.local_path(uri))
    digest = hashlib.sha256()
    with storage.open_uri(uri) as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Candidate(BaseModel):
    """Something a channel lists: a file (hashable) or a feed entry (a URL)."""

    model_config = ConfigDict(frozen=True)

    source: str  # what video_ingest gets: a local path, an s3:// URI or an http(s) URL
    canonical_url: str
    item_time: dt.datetime | None = None
    size_bytes: int | None = None
    title: str | None = None
    hashable: bool = True


def list_folder(channel: Channel, window: Window) -> list[Candidate]:
    """Regular files under the channel's folder matching its patterns, whatever their time.

    `window` is not applied: a file moved into a drop folder with `mv`, or copied with `cp -p` or
    `rsync -a`, keeps an old modification time and would never fall in a scheduled run's window.
    Discovery skips what it has seen by fingerprint (path, size, modification time: no re-hash) or by
    content, so listing everything costs a stat per file. Hidden files (and those in hidden folders) are skipped, so an upload written to `.name.part` and
    renamed into place when complete is only seen complete.
    """
    root = channel.folder()
    if not root.is_dir():
        raise ChannelUnavailable(f"channel {channel.name}: folder {root} does not exist or is not a folder")
    found: list[Candidate] = []
    walker = root.rglob("*") if channel.recursive else root.glob("*")
    try:
        for path in walker:
            rel = path.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or not channel.matches(path.name):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:  # removed while listing
                continue
            if not path.is_file() or st.st_size == 0:
                continue
            mtime = dt.datetime.fromtimestamp(st.st_mtime, tz=UTC)
            resolved = path.resolve()
            found.append(
                Candidate(
                    source=str(resolved),
                    canonical_url=canonical_url(str(resolved)),
                    item_time=mtime,
                    size_bytes=st.st_size,
                )
            )
    except OSError as exc:  # a mount that went away mid-listing
        raise ChannelUnavailable(f"channel {channel.name}: cannot list {root}: {exc}") from exc
    return found


def list_s3(channel: Channel, window: Window) -> list[Candidate]:
    """Objects under the channel's S3 prefix matching its patterns, whatever their time (as
    `list_folder`: `window` is not applied; one listing call per 1,000 keys, no object is read)."""
    uri = channel.location.rstrip("/") + "/"
    try:
        fs, path = storage.filesystem(uri)
        fs.invalidate_cache(path)  # a long-lived worker must not see a stale listing
        listing = fs.find(path, maxdepth=None if channel.recursive else 1, detail=True)
    except FileNotFoundError as exc:
        raise InputError(f"channel {channel.name}: bucket of {uri} does not exist") from exc
    except PermissionError as exc:
        raise InputError(f"channel {channel.name}: access to {uri} denied: {exc}") from exc
    except Exception as exc:
        raise ChannelUnavailable(f"channel {channel.name}: cannot list {uri}: {exc}") from exc
    found: list[Candidate] = []
    for key, info in sorted(listing.items()):
        if info.get("type", "file") != "file":
            continue
        rel = key[len(path.rstrip("/")) + 1 :] if key.startswith(path.rstrip("/") + "/") else key
        if any(part.startswith(".") for part in rel.split("/")) or not channel.matches(posixpath.basename(key)):
            continue
        size = int(info.get("size") or info.get("Size") or 0)
        modified = info.get("LastModified") or info.get("mtime")
        if size == 0 or modified is None:
            continue
        if isinstance(modified, (int, float)):
            modified = dt.datetime.fromtimestamp(modified, tz=UTC)
        modified = as_utc(modified)
        source = f"s3://{key}"
        found.append(Candidate(source=source, canonical_url=canonical_url(source), item_time=modified, size_bytes=size))
    return found


def entry_refused(channel: Channel, url: str) -> str | None:
    """Why a feed entry may not be ingested (None: it may). An entry is an http(s) URL the URL
    policy allows (`sources.check_url`, without DNS here: the fetch resolves and checks again), or
    an `s3://` object of the channel's own `bucket`; nothing else (other buckets, other schemes)."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("http", "https"):
        try:
            sources.check_url(url, resolve=False)
        except InputError:
            return "not allowed by the source URL policy"
        return None
    if scheme == "s3":
        if channel.bucket is None:
            return "s3:// entries need the channel's bucket setting"
        if urlsplit(url).netloc != channel.bucket:
            return f"not in the channel's bucket {channel.bucket!r}"
        return None
    return "only http(s) URLs and s3:// objects of the channel's bucket are ingested"


def list_feed(channel: Channel, window: Window) -> list[Candidate]:
    """Feed entries published inside `window` (undated ones in every window)."""
    base = channel.location if "://" in channel.location else ""
    location = channel.location if "://" in channel.location else str(channel.folder())
    entries = parse_feed(read_feed(location), base)
    found: list[Candidate] = []
    for entry in entries:
        refused = entry_refused(channel, entry.url)
        if refused is not None:
            log.warning("channel %s: skipping %r: %s", channel.name, sources.redact_url(entry.url), refused)
            continue
        if entry.published not in window:
            continue
        found.append(
            Candidate(
                source=entry.url,
                canonical_url=canonical_url(entry.url),
                item_time=entry.published,
                title=entry.title,
                hashable=False,
            )
        )
    return found


def list_candidates(channel: Channel, window: Window) -> list[Candidate]:
    lister = {"folder": list_folder, "s3": list_s3, "feed": list_feed}[channel.kind]
    return lister(channel, window)
