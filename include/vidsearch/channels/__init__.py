"""Channels: sources that keep getting new videos, and the discovery of their new videos.

Modules: `config` (the channels file and its schema), `listing` (folder, S3 and feed listings in a
time window), `feeds` (RSS and Atom), `discovery` (windows, dedupe, the runs to trigger).

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

from vidsearch.channels.config import (
    CHANNELS_FILE_ENV,
    DEFAULT_CHANNELS_FILE,
    DEFAULT_PATTERNS,
    REPO_ROOT,
    Channel,
    ChannelConfigError,
    ChannelsFile,
    ChannelUnavailable,
    IngestSettings,
    channels_file,
    load_channels,
)
from vidsearch.channels.discovery import (
    DiscoveredItem,
    Discovery,
    DiscoveryRun,
    discover_channel,
    discover_due,
    discovery_window,
    due_channels,
    report_discovery,
    run_id_for,
    url_key,
    video_id_of,
)
from vidsearch.channels.feeds import FeedEntry, parse_feed, read_feed
from vidsearch.channels.listing import (
    FULL_SCAN,
    Candidate,
    Window,
    canonical_url,
    entry_refused,
    list_candidates,
    list_feed,
    list_folder,
    list_s3,
    sha256_uri,
)

__all__ = [
    "CHANNELS_FILE_ENV",
    "DEFAULT_CHANNELS_FILE",
    "DEFAULT_PATTERNS",
    "FULL_SCAN",
    "REPO_ROOT",
    "Candidate",
    "Channel",
    "ChannelConfigError",
    "ChannelUnavailable",
    "ChannelsFile",
    "DiscoveredItem",
    "Discovery",
    "DiscoveryRun",
    "FeedEntry",
    "IngestSettings",
    "Window",
    "canonical_url",
    "channels_file",
    "discover_channel",
    "discover_due",
    "discovery_window",
    "entry_refused",
    "due_channels",
    "list_candidates",
    "list_feed",
    "list_folder",
    "list_s3",
    "load_channels",
    "parse_feed",
    "read_feed",
    "report_discovery",
    "run_id_for",
    "sha256_uri",
    "url_key",
    "video_id_of",
]
