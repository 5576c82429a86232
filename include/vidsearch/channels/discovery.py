"""Discovery: the window a scheduled run covers, dedupe by content hash and URL, and the runs to trigger."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import posixpath
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from vidsearch.channels.config import UTC, Channel, ChannelUnavailable, as_utc, channels_file, load_channels
from vidsearch.channels.listing import FULL_SCAN, Candidate, Window, canonical_url, list_candidates, sha256_uri
from vidsearch.errors import InputError, PermanentError, TransientError
from vidsearch.media.sources import redact_url

log = logging.getLogger(__name__)


RUN_ID_PREFIX = "channel__"


_MAX_FIRES = 100_000


def discovery_window(channel: Channel, start: dt.datetime, end: dt.datetime) -> Window | None:
    """The window a `channel_ingest` run over data interval [start, end) discovers `channel` over, or
    None when the channel is not due in that run (see the module docstring)."""
    start, end = as_utc(start), as_utc(end)
    if channel.schedule is None:
        return Window(start, end)
    from croniter import croniter

    tz = ZoneInfo(channel.timezone)
    it = croniter(channel.schedule, start.astimezone(tz))
    fires: list[dt.datetime] = []
    for _ in range(_MAX_FIRES):
        fire = as_utc(it.get_next(dt.datetime))
        if fire > end:
            break
        fires.append(fire)
    if not fires:
        return None
    previous = as_utc(croniter(channel.schedule, fires[0].astimezone(tz)).get_prev(dt.datetime))
    return Window(previous, fires[-1])


def video_id_of(content_sha256: str) -> str:
    """The id video_ingest gives a video of this content (`VideoManifest.video_id`)."""
    return content_sha256[:32]


def url_key(url: str) -> str:
    return "u" + hashlib.sha256(canonical_url(url).encode()).hexdigest()[:32]


def run_id_for(channel: str, item_key: str) -> str:
    """The deterministic video_ingest run id of one channel item."""
    return f"{RUN_ID_PREFIX}{channel}__{item_key}"


class DiscoveredItem(BaseModel):
    """A new item: one video_ingest run to trigger."""

    model_config = ConfigDict(frozen=True)

    channel: str
    collection: str
    item_key: str
    source: str
    canonical_url: str
    content_sha256: str | None = None
    size_bytes: int | None = None
    item_time: dt.datetime | None = None
    title: str | None = None
    run_id: str
    conf: dict[str, Any]

    @property
    def video_id(self) -> str | None:
        return video_id_of(self.content_sha256) if self.content_sha256 else None

    def note(self) -> str:
        """One line for the triggered run's note and the trigger task's grid name."""
        when = f", {self.item_time.isoformat(timespec='seconds')}" if self.item_time else ""
        name = self.title or posixpath.basename(urlsplit(self.canonical_url).path) or self.canonical_url
        return f"{self.channel}: {name}{when}"

    def trigger_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of one mapped TriggerDagRunOperator instance."""
        return {"trigger_run_id": self.run_id, "conf": self.conf, "note": self.note()}


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
    interval: tuple[dt.datetime | None, dt.datetime | None] = (None, None),
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
            and abs((as_utc(r["item_time"]) - cand.item_time).total_seconds()) < 1e-3
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
    keyed: list[tuple[Candidate, str, str | None, str]] = [
        (cand, video_id_of(sha), sha, "duplicate content") for cand, sha in hashed
    ]
    keyed += [(cand, url_key(cand.canonical_url), None, "duplicate URL") for cand in unhashed]
    recorded = catalog.channel_items_by_key(channel.name, [key for _, key, _, _ in keyed])
    known = catalog.known_content(channel.collection, [sha for _, sha in hashed])
    # Videos record their source redacted (sources.redact_url): compare like with like.
    known_src = catalog.known_sources(channel.collection, [redact_url(c.source) for c in unhashed])
    seen: set[str] = set()

    def item(cand: Candidate, key: str, sha: str | None) -> DiscoveredItem:
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

    def known_elsewhere(cand: Candidate, sha: str | None) -> str | None:
        """Why an item no channel run recorded under its key is not new (None: it is new)."""
        if sha is not None and sha in known:
            return "already ingested" if known[sha].startswith("video") else "already discovered"
        if sha is None and redact_url(cand.source) in known_src:
            return "already ingested"
        return None

    for cand, key, digest, duplicate in keyed:
        if key in seen:
            skip(duplicate, cand)
            continue
        seen.add(key)
        row = recorded.get(key)
        if row is None:
            reason = known_elsewhere(cand, digest)
        else:
            reason = None if ours(row) else "already discovered"
        if reason is not None:
            skip(reason, cand)
            continue
        new.append(item(cand, key, digest))

    if record and new:
        catalog.record_channel_items(
            [
                dict(
                    channel=i.channel,
                    item_key=i.item_key,
                    collection=i.collection,
                    canonical_url=i.canonical_url,
                    source=redact_url(i.source),  # the trigger's conf has the source itself
                    content_sha256=i.content_sha256,
                    video_id=i.video_id,
                    size_bytes=i.size_bytes,
                    item_time=i.item_time,
                    run_id=i.run_id,
                    conf={**i.conf, "source": redact_url(i.source)},
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
        return [(c, FULL_SCAN if full_scan else Window(as_utc(start), as_utc(end))) for c in picked]
    due = []
    for channel in channels:
        if not channel.enabled:
            continue
        window = discovery_window(channel, start, end)
        if window is not None:
            due.append((channel, FULL_SCAN if full_scan else window))
    return due


@dataclasses.dataclass
class DiscoveryRun:
    """What one `channel_ingest` run discovered over every due channel."""

    items: list[dict[str, Any]]  # one TriggerDagRunOperator kwargs dict per new video
    summary: list[str]  # one line per channel read
    errors: list[str]  # one line per channel that could not be read
    transient: bool  # some channel failed with an error a retry may cure


def discover_due(
    catalog: Any,
    start: dt.datetime | None,
    end: dt.datetime | None,
    *,
    run_id: str,
    only: Sequence[str] = (),
    full_scan: bool = False,
    channels: Sequence[Channel] | None = None,
) -> DiscoveryRun:
    """Discover the new videos of every channel due in [start, end) (all of `load_channels()` unless
    `channels` is given) and record them in the catalog.

    A channel that cannot be read does not stop the others: its error is collected (`errors`,
    `transient` when a retry may cure it) and the caller decides whether to retry the whole run.
    """
    if (start is None or end is None) and not full_scan:
        raise InputError("this run has no data interval: trigger it with a logical date, or set full_scan")
    configured = list(channels) if channels is not None else load_channels()
    log.info(
        "data interval [%s, %s), %d channel(s) in %s%s",
        start,
        end,
        len(configured),
        channels_file() if channels is None else "the given list",
        " (full scan)" if full_scan else "",
    )
    now = dt.datetime.now(UTC)
    due = due_channels(configured, start or now, end or now, only=only, full_scan=full_scan)
    if not due:
        log.info("no channel is due in this interval")
    found_run = DiscoveryRun(items=[], summary=[], errors=[], transient=False)
    for channel, window in due:
        try:
            found = discover_channel(channel, catalog, window, discovery_run_id=run_id, interval=(start, end))
        except (PermanentError, TransientError) as exc:
            found_run.transient = found_run.transient or isinstance(exc, TransientError)
            log.error("channel %s: %s", channel.name, exc)
            found_run.errors.append(f"{channel.name}: {' '.join(str(exc).split())}")
            continue
        found_run.summary.append(found.summary())
        found_run.items.extend(item.trigger_kwargs() for item in found.new)
    log.info("%d new video(s) to trigger", len(found_run.items))
    return found_run


def report_discovery(summary: Sequence[str], errors: Sequence[str]) -> dict[str, int]:
    """Log a run's per-channel summary; raise PermanentError naming the channels that could not be read."""
    for line in summary:
        log.info("%s", line)
    if errors:
        raise PermanentError("channel(s) could not be read: " + "; ".join(errors))
    return {"channels": len(summary), "errors": len(errors)}
