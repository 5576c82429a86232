"""Channels: sources that keep getting new videos, and the discovery of their new videos.

A channel is a **folder** (local or mounted), an **S3 prefix**, or a **feed** (RSS 2.0 / Atom, or a plain
list of URLs), together with the ingest settings its videos get (the `video_ingest` trigger form minus
`source`) and a schedule. Channels are defined in one YAML file, `include/channels.yaml`, or the file
named by the environment variable `VIDSEARCH_CHANNELS_FILE` (see that file for the format).

Discovery is keyed on a time window, the data interval of the `channel_ingest` run:

* folder / S3: files whose modification time is in [start, end);
* RSS / Atom: entries whose published time (else updated time) is in [start, end); undated entries
  are candidates in every window (dedupe by URL keeps them from being ingested twice);
* plain URL list: one URL per line, optionally followed by an ISO 8601 time (`URL 2026-11-24T10:00Z`),
  which is then handled like a published time; lines without a time are candidates in every window.

A channel's own `schedule` (cron, in its `timezone`) decides in which `channel_ingest` runs it is
discovered: in the run whose data interval (start, end] contains one of its fire times, over the
window from the fire time before the first such fire to the last one. Consecutive runs therefore give
each channel consecutive, non-overlapping windows: every file is looked at in exactly one run, and a
backfill over a date range discovers exactly what was added in that range. Without a schedule the
channel follows `channel_ingest`'s own (hourly) intervals.

Dedupe, against the catalog (Postgres):

* content: files are hashed (SHA-256, the same hash `video_ingest`'s probe computes, whose first 32
  hex digits are the video id); a file is skipped when its content is already a video of the
  channel's collection, was already handed to `video_ingest` by a channel for that collection, or
  appears twice in one discovery (the oldest, then lexically first, copy wins);
* URL: feed entries (not downloaded at discovery) are keyed on their canonical URL and skipped when
  that URL was already handed over by the channel or is already the source of a video of the
  collection. Content-identical videos behind different URLs are caught by `video_ingest` itself,
  whose ids are content hashes (re-ingesting one changes no count);
* a file already recorded at the same canonical URL with the same size and modification time is not
  hashed again.

Each new item gets a deterministic `video_ingest` run id, `channel__<channel>__<item key>`, where the
item key is the video id (hashed items) or `u` + the first 32 hex digits of the SHA-256 of the
canonical URL: triggering the same item twice is impossible, whatever re-runs or overlapping runs do.

Nothing here imports Airflow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import fnmatch
import hashlib
import logging
import os
import posixpath
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Sequence
from urllib.parse import urljoin, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import storage
from .errors import InputError, PermanentError, TransientError
from .records import Sampling, SegmentSeconds

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHANNELS_FILE = REPO_ROOT / "include" / "channels.yaml"
CHANNELS_FILE_ENV = "VIDSEARCH_CHANNELS_FILE"
TRIGGERED_DAG_ID = "video_ingest"
RUN_ID_PREFIX = "channel__"
DEFAULT_PATTERNS = ("*.mp4", "*.m4v", "*.mov", "*.mkv", "*.webm", "*.avi", "*.mpg", "*.mpeg", "*.ts")
MAX_FEED_BYTES = 20 * 1024 * 1024
_HASH_CHUNK = 1 << 20
UTC = dt.timezone.utc


class ChannelConfigError(PermanentError):
    """The channels file is missing, unreadable or invalid."""


class ChannelUnavailable(TransientError):
    """A channel's folder, bucket or feed cannot be read right now (a mount gone, a 503): retry.

    Not skipped silently: with discovery keyed on time windows, a window read while the source was away
    would lose its files for good; a failed run can be cleared and re-run once the source is back.
    """


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


class IngestSettings(BaseModel):
    """What each of the channel's videos is ingested with: `video_ingest`'s params except `source`.

    Settings left out take `video_ingest`'s defaults. The bounds mirror the trigger form's, so a typo
    fails when the channels file is loaded, not in a triggered run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    collection: Optional[str] = Field(None, pattern=r"^[a-z][a-z0-9_]{0,62}$")
    segment_seconds: Optional[SegmentSeconds] = None
    sample_fps: Optional[float] = Field(None, gt=0, le=120)
    sampling: Optional[Sampling] = None
    time_limit_seconds: Optional[float] = Field(None, gt=0)
    score_threshold: Optional[float] = Field(None, ge=0, le=1)
    detector_model: Optional[str] = Field(None, min_length=1)
    embedder_model: Optional[str] = Field(None, min_length=1)

    @property
    def collection_name(self) -> str:
        return self.collection or "default"

    def conf(self, source: str) -> dict[str, Any]:
        """The `video_ingest` run conf for one video."""
        return {"source": source, **self.model_dump(exclude_none=True)}


class Channel(BaseModel):
    """One recurring source (an entry of the channels file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="Unique; part of run ids, so lowercase letters, digits, '_' and '-' only.",
    )
    kind: Literal["folder", "s3", "feed"]
    location: str = Field(
        min_length=1,
        description="folder: a path (relative ones are relative to the repository root); "
        "s3: s3://bucket/prefix; feed: an http(s) URL, an s3:// URI or a path of the feed or URL list.",
    )
    description: str = ""
    enabled: bool = True
    schedule: Optional[str] = Field(
        None, description="Cron expression or preset (@hourly, @daily, ...); empty: every channel_ingest run."
    )
    timezone: str = "UTC"
    patterns: tuple[str, ...] = Field(DEFAULT_PATTERNS, description="Glob patterns on file names (folder, s3).")
    recursive: bool = True
    ingest: IngestSettings = Field(default_factory=IngestSettings)

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: Optional[str]) -> Optional[str]:
        if value is None or not value.strip():
            return None
        from croniter import croniter

        if not croniter.is_valid(value.strip()):
            raise ValueError(f"not a valid cron expression: {value!r}")
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("patterns")
    @classmethod
    def _some_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not p.strip() for p in value):
            raise ValueError("patterns must be a non-empty list of non-empty globs")
        return value

    @model_validator(mode="after")
    def _location_fits_kind(self) -> "Channel":
        scheme = urlsplit(self.location).scheme.lower() if "://" in self.location else ""
        if self.kind == "folder" and scheme:
            raise ValueError(f"channel {self.name}: a folder location is a path, not {self.location!r}")
        if self.kind == "s3" and scheme != "s3":
            raise ValueError(f"channel {self.name}: an s3 location starts with s3://, got {self.location!r}")
        if self.kind == "feed" and scheme not in ("", "http", "https", "s3"):
            raise ValueError(f"channel {self.name}: a feed location is http(s)://, s3:// or a path")
        return self

    @property
    def collection(self) -> str:
        return self.ingest.collection_name

    def folder(self) -> Path:
        path = Path(os.path.expandvars(self.location)).expanduser()
        return path if path.is_absolute() else REPO_ROOT / path

    def matches(self, name: str) -> bool:
        return not name.startswith(".") and any(fnmatch.fnmatch(name.lower(), p.lower()) for p in self.patterns)


class ChannelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: list[Channel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> "ChannelsFile":
        names = [c.name for c in self.channels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate channel name(s): {', '.join(dupes)}")
        return self


def channels_file() -> Path:
    """The channels file in use: VIDSEARCH_CHANNELS_FILE, else include/channels.yaml."""
    return Path(os.environ.get(CHANNELS_FILE_ENV) or DEFAULT_CHANNELS_FILE)


def load_channels(path: Optional[Path | str] = None) -> list[Channel]:
    """Every channel of the file (enabled or not); raises ChannelConfigError naming what is wrong."""
    path = Path(path) if path is not None else channels_file()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ChannelConfigError(f"channels file {path} does not exist") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ChannelConfigError(f"channels file {path} is unreadable: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise ChannelConfigError(f"channels file {path}: expected a mapping with a 'channels' list")
    try:
        return ChannelsFile.model_validate(data).channels
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}" for err in exc.errors()
        )
        raise ChannelConfigError(f"channels file {path} is invalid: {problems}") from exc


# --------------------------------------------------------------------------------------------------
# Schedules and windows
# --------------------------------------------------------------------------------------------------


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclasses.dataclass(frozen=True)
class Window:
    """A half-open time window [start, end); None on both sides means "any time" (a full scan)."""

    start: Optional[dt.datetime]
    end: Optional[dt.datetime]

    def __contains__(self, when: Optional[dt.datetime]) -> bool:
        if self.start is None and self.end is None:
            return True
        if when is None:
            return True  # undated feed entries: candidates in every window, deduped by URL
        when = _utc(when)
        return (self.start is None or when >= self.start) and (self.end is None or when < self.end)

    def __str__(self) -> str:
        if self.start is None and self.end is None:
            return "[any time]"
        fmt = lambda t: t.isoformat() if t else "…"  # noqa: E731
        return f"[{fmt(self.start)}, {fmt(self.end)})"


FULL_SCAN = Window(None, None)
_MAX_FIRES = 100_000


def discovery_window(channel: Channel, start: dt.datetime, end: dt.datetime) -> Optional[Window]:
    """The window a `channel_ingest` run over data interval [start, end) discovers `channel` over, or
    None when the channel is not due in that run (see the module docstring)."""
    start, end = _utc(start), _utc(end)
    if channel.schedule is None:
        return Window(start, end)
    from croniter import croniter

    tz = ZoneInfo(channel.timezone)
    it = croniter(channel.schedule, start.astimezone(tz))
    fires: list[dt.datetime] = []
    for _ in range(_MAX_FIRES):
        fire = _utc(it.get_next(dt.datetime))
        if fire > end:
            break
        fires.append(fire)
    if not fires:
        return None
    previous = _utc(croniter(channel.schedule, fires[0].astimezone(tz)).get_prev(dt.datetime))
    return Window(previous, fires[-1])


# --------------------------------------------------------------------------------------------------
# Items, URLs, hashes, run ids
# --------------------------------------------------------------------------------------------------


def canonical_url(location: str) -> str:
    """The form a source is deduped on: `file://` + resolved absolute path for local files,
    `s3://bucket/key`, or an http(s) URL with lowercase scheme and host, no credentials, no default
    port, no fragment, and `/` for an empty path (the query is kept: it may select the video)."""
    location = location.strip()
    if "://" not in location:
        return "file://" + str(Path(location).expanduser().resolve())
    parts = urlsplit(location)
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


def video_id_of(content_sha256: str) -> str:
    """The id video_ingest gives a video of this content (`VideoManifest.video_id`)."""
    return content_sha256[:32]


def url_key(url: str) -> str:
    return "u" + hashlib.sha256(canonical_url(url).encode()).hexdigest()[:32]


def run_id_for(channel: str, item_key: str) -> str:
    """The deterministic video_ingest run id of one channel item."""
    return f"{RUN_ID_PREFIX}{channel}__{item_key}"


def sha256_uri(uri: str) -> str:
    """SHA-256 of a local file (the probe's helper) or of an object in storage, streamed."""
    if storage.is_local(uri):
        from .probe import sha256_file

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
    item_time: Optional[dt.datetime] = None
    size_bytes: Optional[int] = None
    title: Optional[str] = None
    hashable: bool = True


class DiscoveredItem(BaseModel):
    """A new item: one video_ingest run to trigger."""

    model_config = ConfigDict(frozen=True)

    channel: str
    collection: str
    item_key: str
    source: str
    canonical_url: str
    content_sha256: Optional[str] = None
    size_bytes: Optional[int] = None
    item_time: Optional[dt.datetime] = None
    title: Optional[str] = None
    run_id: str
    conf: dict[str, Any]

    @property
    def video_id(self) -> Optional[str]:
        return video_id_of(self.content_sha256) if self.content_sha256 else None

    def note(self) -> str:
        """One line for the triggered run's note and the trigger task's grid name."""
        when = f", {self.item_time.isoformat(timespec='seconds')}" if self.item_time else ""
        name = self.title or posixpath.basename(urlsplit(self.canonical_url).path) or self.canonical_url
        return f"{self.channel}: {name}{when}"

    def trigger_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of one mapped TriggerDagRunOperator instance."""
        return {"trigger_run_id": self.run_id, "conf": self.conf, "note": self.note()}


# --------------------------------------------------------------------------------------------------
# Listing: folder, S3, feed
# --------------------------------------------------------------------------------------------------


def list_folder(channel: Channel, window: Window) -> list[Candidate]:
    """Regular files under the channel's folder matching its patterns, modified inside `window`.

    Hidden files (and those in hidden folders) are skipped, so an upload written to `.name.part` and
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
            if mtime not in window:
                continue
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
    """Objects under the channel's S3 prefix matching its patterns, last modified inside `window`."""
    uri = channel.location.rstrip("/") + "/"
    try:
        fs, path = storage.filesystem(uri)
        fs.invalidate_cache(path)  # a long-lived worker must not see a stale listing
        listing = fs.find(path, maxdepth=None if channel.recursive else 1, detail=True)
    except FileNotFoundError as exc:
        raise InputError(f"channel {channel.name}: bucket of {uri} does not exist") from exc
    except PermissionError as exc:
        raise InputError(f"channel {channel.name}: access to {uri} denied: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - network, throttling, 5xx: worth a retry
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
        modified = _utc(modified)
        if modified not in window:
            continue
        source = f"s3://{key}"
        found.append(Candidate(source=source, canonical_url=canonical_url(source), item_time=modified, size_bytes=size))
    return found


@dataclasses.dataclass(frozen=True)
class FeedEntry:
    url: str
    published: Optional[dt.datetime]
    title: Optional[str] = None


_MEDIA_NS = "{http://search.yahoo.com/mrss/}"
_ATOM_NS = "{http://www.w3.org/2005/Atom}"
_DC_NS = "{http://purl.org/dc/elements/1.1/}"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_time(text: Optional[str]) -> Optional[dt.datetime]:
    """RFC 822 (RSS pubDate) or ISO 8601 (Atom, Dublin Core, URL lists); None when absent or invalid."""
    if not text or not text.strip():
        return None
    text = text.strip()
    try:
        return _utc(dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00")))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return _utc(parsed) if parsed else None


def _child_text(elem: ET.Element, *names: str) -> Optional[str]:
    for name in names:
        for child in elem:
            if _local(child.tag) == name and child.text and child.text.strip():
                return child.text.strip()
    return None


def _rss_entry(item: ET.Element, base: str) -> Optional[FeedEntry]:
    url = None
    enclosures = [c for c in item if _local(c.tag) == "enclosure" and c.get("url")]
    videos = [c for c in enclosures if (c.get("type") or "").startswith("video/")]
    if videos or enclosures:
        url = (videos or enclosures)[0].get("url")
    if url is None:
        media = [c for c in item.iter(f"{_MEDIA_NS}content") if c.get("url")]
        if media:
            url = media[0].get("url")
    if url is None:
        url = _child_text(item, "link")
    if not url:
        return None
    published = _parse_time(_child_text(item, "pubDate")) or _parse_time(_child_text(item, "date", "updated"))
    return FeedEntry(urljoin(base, url.strip()), published, _child_text(item, "title"))


def _atom_entry(entry: ET.Element, base: str) -> Optional[FeedEntry]:
    links = [c for c in entry if _local(c.tag) == "link" and c.get("href")]
    chosen = [c for c in links if c.get("rel") == "enclosure"]
    chosen = chosen or [c for c in links if (c.get("type") or "").startswith("video/")]
    chosen = chosen or [c for c in links if c.get("rel") in (None, "alternate")]
    url = chosen[0].get("href") if chosen else None
    if url is None:
        media = [c for c in entry.iter(f"{_MEDIA_NS}content") if c.get("url")]
        url = media[0].get("url") if media else None
    if not url:
        return None
    published = _parse_time(_child_text(entry, "published")) or _parse_time(_child_text(entry, "updated"))
    return FeedEntry(urljoin(base, url.strip()), published, _child_text(entry, "title"))


def parse_feed(data: bytes, base_url: str = "") -> list[FeedEntry]:
    """Entries of an RSS 2.0 / RSS 1.0 / Atom feed, or of a plain list of URLs (one per line, `#`
    comments, an optional ISO 8601 time after the URL). Raises InputError for unparseable XML."""
    text = data.decode("utf-8-sig", errors="replace")
    if text.lstrip().startswith("<"):
        try:
            root = ET.fromstring(data)
        except ET.ParseError as exc:
            raise InputError(f"feed {base_url or ''} is not well-formed XML: {exc}") from exc
        kind = _local(root.tag)
        entries: list[Optional[FeedEntry]]
        if kind == "feed":
            entries = [_atom_entry(e, base_url) for e in root if _local(e.tag) == "entry"]
        elif kind in ("rss", "RDF"):
            entries = [_rss_entry(e, base_url) for e in root.iter() if _local(e.tag) == "item"]
        else:
            raise InputError(f"feed {base_url or ''}: unknown XML root <{kind}> (expected rss, RDF or feed)")
        return [e for e in entries if e is not None]
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        url, _, rest = line.partition(" ")
        published = _parse_time(rest.strip()) if rest.strip() else None
        found.append(FeedEntry(urljoin(base_url, url), published))
    return found


def read_feed(location: str) -> bytes:
    """The feed document: downloaded through the same guarded fetcher as video sources (http(s) with
    link-local addresses refused, s3://), or read from a path."""
    from . import sources

    with tempfile.TemporaryDirectory(prefix="vidsearch-feed-") as tmp:
        try:
            local = sources.fetch_source(location, Path(tmp), max_bytes=MAX_FEED_BYTES)
        except TransientError as exc:
            raise ChannelUnavailable(str(exc)) from exc
        return local.read_bytes()


def list_feed(channel: Channel, window: Window) -> list[Candidate]:
    """Feed entries published inside `window` (undated ones in every window)."""
    base = channel.location if "://" in channel.location else ""
    location = channel.location if "://" in channel.location else str(channel.folder())
    entries = parse_feed(read_feed(location), base)
    found: list[Candidate] = []
    for entry in entries:
        scheme = urlsplit(entry.url).scheme.lower()
        if scheme not in ("http", "https", "s3"):
            log.warning("channel %s: skipping %r (only http(s) and s3 URLs are ingested)", channel.name, entry.url)
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


# --------------------------------------------------------------------------------------------------
# Discovery with dedupe
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Discovery:
    """What one channel's discovery found: the new items and why the others were skipped."""

    channel: str
    window: Window
    new: list[DiscoveredItem]
    skipped: dict[str, list[str]]  # reason -> canonical URLs

    def summary(self) -> str:
        parts = [f"{len(self.new)} new"] + [f"{len(v)} {k}" for k, v in sorted(self.skipped.items()) if v]
        return f"channel {self.channel} over {self.window}: " + ", ".join(parts)


def discover_channel(
    channel: Channel,
    catalog: Any,
    window: Window,
    *,
    discovery_run_id: str,
    interval: tuple[Optional[dt.datetime], Optional[dt.datetime]] = (None, None),
    record: bool = True,
) -> Discovery:
    """List the channel's candidates in `window`, drop what the catalog already has, and (with
    `record`) record the new items, keyed on (channel, item key), before they are triggered.

    Items recorded earlier by the same `discovery_run_id` count as new again: a cleared or retried
    discovery re-triggers them (harmless: their run ids exist, the trigger skips them) instead of
    dropping items whose trigger may never have happened.
    """
    candidates = sorted(
        list_candidates(channel, window),
        key=lambda c: (c.item_time or dt.datetime.min.replace(tzinfo=UTC), c.canonical_url),
    )
    skipped: dict[str, list[str]] = {}

    def skip(reason: str, cand: Candidate) -> None:
        skipped.setdefault(reason, []).append(cand.canonical_url)

    def ours(row: dict[str, Any]) -> bool:
        return row["discovery_run_id"] == discovery_run_id

    by_url = catalog.channel_items_by_url(channel.name, [c.canonical_url for c in candidates])
    hashed: list[tuple[Candidate, str]] = []
    unhashed: list[Candidate] = []
    for cand in candidates:
        if not cand.hashable:
            unhashed.append(cand)
            continue
        # Same path, same size, same modification time as a recorded item: same content, no re-hash.
        same = [
            r
            for r in by_url.get(cand.canonical_url, [])
            if r["content_sha256"]
            and r["size_bytes"] == cand.size_bytes
            and r["item_time"] is not None
            and cand.item_time is not None
            and abs((_utc(r["item_time"]) - cand.item_time).total_seconds()) < 1e-3
        ]
        if same and not any(ours(r) for r in same):
            skip("already discovered", cand)
            continue
        try:
            sha = sha256_uri(cand.source)
        except FileNotFoundError:
            skip("gone before hashing", cand)
            continue
        except OSError as exc:
            raise ChannelUnavailable(f"channel {channel.name}: cannot read {cand.source}: {exc}") from exc
        hashed.append((cand, sha))

    new: list[DiscoveredItem] = []
    # Hashed items are keyed by content, the others by canonical URL; hashed ones first.
    keyed = [(cand, video_id_of(sha), sha, "duplicate content") for cand, sha in hashed]
    keyed += [(cand, url_key(cand.canonical_url), None, "duplicate URL") for cand in unhashed]
    recorded = catalog.channel_items_by_key(channel.name, [key for _, key, _, _ in keyed])
    known = catalog.known_content(channel.collection, [sha for _, sha in hashed])
    known_src = catalog.known_sources(channel.collection, [c.source for c in unhashed])
    seen: set[str] = set()

    def item(cand: Candidate, key: str, sha: Optional[str]) -> DiscoveredItem:
        return DiscoveredItem(
            channel=channel.name,
            collection=channel.collection,
            item_key=key,
            source=cand.source,
            canonical_url=cand.canonical_url,
            content_sha256=sha,
            size_bytes=cand.size_bytes,
            item_time=cand.item_time,
            title=cand.title,
            run_id=run_id_for(channel.name, key),
            conf=channel.ingest.conf(cand.source),
        )

    def known_elsewhere(cand: Candidate, sha: Optional[str]) -> Optional[str]:
        """Why an item no channel run recorded under its key is not new (None: it is new)."""
        if sha is not None and sha in known:
            return "already ingested" if known[sha].startswith("video") else "already discovered"
        if sha is None and cand.source in known_src:
            return "already ingested"
        return None

    for cand, key, sha, duplicate in keyed:
        if key in seen:
            skip(duplicate, cand)
            continue
        seen.add(key)
        row = recorded.get(key)
        if row is None:
            reason = known_elsewhere(cand, sha)
        else:
            reason = None if ours(row) else "already discovered"
        if reason is not None:
            skip(reason, cand)
            continue
        new.append(item(cand, key, sha))

    if record and new:
        catalog.record_channel_items(
            [
                dict(
                    channel=i.channel,
                    item_key=i.item_key,
                    collection=i.collection,
                    canonical_url=i.canonical_url,
                    source=i.source,
                    content_sha256=i.content_sha256,
                    video_id=i.video_id,
                    size_bytes=i.size_bytes,
                    item_time=i.item_time,
                    run_id=i.run_id,
                    conf=i.conf,
                    discovery_run_id=discovery_run_id,
                    interval_start=interval[0],
                    interval_end=interval[1],
                )
                for i in new
            ]
        )
    result = Discovery(channel=channel.name, window=window, new=new, skipped=skipped)
    log.info("%s", result.summary())
    for i in new:
        log.info("  new: %s -> run %s", i.canonical_url, i.run_id)
    return result


def due_channels(
    channels: Sequence[Channel],
    start: dt.datetime,
    end: dt.datetime,
    *,
    only: Iterable[str] = (),
    full_scan: bool = False,
) -> list[tuple[Channel, Window]]:
    """The channels a run over [start, end) discovers, each with its window.

    Without `only`: the enabled channels whose schedule fires in (start, end]. With `only` (names):
    exactly those channels (enabled or not), over [start, end) whatever their schedule. `full_scan`:
    over all time (dedupe still applies).
    """
    wanted = [n for n in only if n]
    if wanted:
        names = {c.name for c in channels}
        unknown = sorted(set(wanted) - names)
        if unknown:
            raise InputError(f"unknown channel(s): {', '.join(unknown)} (known: {', '.join(sorted(names)) or 'none'})")
        picked = [c for c in channels if c.name in set(wanted)]
        return [(c, FULL_SCAN if full_scan else Window(_utc(start), _utc(end))) for c in picked]
    due = []
    for channel in channels:
        if not channel.enabled:
            continue
        window = discovery_window(channel, start, end)
        if window is not None:
            due.append((channel, FULL_SCAN if full_scan else window))
    return due
