"""RSS 2.0 (with Media RSS) and Atom feeds: fetching, bounded in size, and parsing into entries."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import logging
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urljoin

from vidsearch.channels.config import ChannelUnavailable, as_utc
from vidsearch.errors import InputError, TransientError

log = logging.getLogger(__name__)


MAX_FEED_BYTES = 20 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class FeedEntry:
    url: str
    published: dt.datetime | None
    title: str | None = None


_MEDIA_NS = "{http://search.yahoo.com/mrss/}"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_time(text: str | None) -> dt.datetime | None:
    """RFC 822 (RSS pubDate) or ISO 8601 (Atom, Dublin Core, URL lists); None when absent or invalid."""
    if not text or not text.strip():
        return None
    text = text.strip()
    try:
        return as_utc(dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00")))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return as_utc(parsed) if parsed else None


def _child_text(elem: ET.Element, *names: str) -> str | None:
    for name in names:
        for child in elem:
            if _local(child.tag) == name and child.text and child.text.strip():
                return child.text.strip()
    return None


def _rss_entry(item: ET.Element, base: str) -> FeedEntry | None:
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


def _atom_entry(entry: ET.Element, base: str) -> FeedEntry | None:
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
        entries: list[FeedEntry | None]
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
    """The feed document: fetched by the same guarded fetcher as video sources (http(s) under the URL
    policy, s3://, or a path inside the source roots; see `vidsearch.media.sources`)."""
    from vidsearch.media import sources

    with tempfile.TemporaryDirectory(prefix="vidsearch-feed-") as tmp:
        try:
            local = sources.fetch_source(location, Path(tmp), max_bytes=MAX_FEED_BYTES)
        except TransientError as exc:
            raise ChannelUnavailable(str(exc)) from exc
        return local.read_bytes()
