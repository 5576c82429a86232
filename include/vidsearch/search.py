"""Search and labeling over the catalog (Postgres) and the object index (Weaviate), without Airflow.

What the search API (`plugins/vidsearch_api`) serves, as plain methods on `SearchService`, which
validates the parameters and composes the stores that own the queries: `CatalogBrowser`
(`stores/browse.py`: collections, videos, frames, objects), `LabelStore` (`stores/labels.py`: labels,
propagations, the audit trail) and `ObjectIndex` (`stores/index.py`: stored vectors, nearest neighbours).

* browsing: collections, videos, frames (with their objects), single objects, frame images and crops;
* similar objects: a near-vector search in Weaviate from the query object's own stored vector, with the
  video / detector-label filters applied inside Weaviate and the label filter and the negative exclusion
  applied against the labels in Postgres (by id inside Weaviate when the id lists are small, and always
  checked again afterwards), fetching more candidates than asked for until enough survive;
* text search: the collection's own CLIP-family embedder (its text tower) embeds the query into the
  space of the crops; loaded embedders are cached per model per process;
* labels: human labels (positive / negative) with an audit trail; effective labels (one per name and
  object: a human label replaces a propagated one); per-name counts;
* transcripts: keyword (BM25) or hybrid (BM25 fused with the query's text embedding) search over the
  transcript chunks, each hit a moment (its time, its text with the query's words marked, the sampled
  frame nearest it); a video's transcript with its per-segment audio states; and the combined query
  "said X while Y is visible" (`moments`): the chunks matching X (Postgres full text, every match)
  intersected in time with the ranges where Y (a detector label, or a positive label) is visible;
* propagation: preview / apply / undo. Sources are the objects labeled positive by a human with the
  name, negatives those labeled negative. Candidates come from a near-vector search around each source;
  a candidate's score is its best cosine similarity to a source minus its best similarity to a negative
  (a negative's similarity counts only when positive: being unlike a negative earns nothing), and
  candidates scoring at least the threshold are proposed, best first. Apply stores them as propagated
  positive labels with provenance (sources, negatives, embedder model, threshold), never overwriting a
  human label; undo removes exactly the labels that propagation still owns.

Bounds (docs/security.md §1): a propagation takes at most `MAX_PROPAGATION_SOURCES` sources and
`MAX_PROPAGATION_NEGATIVES` negatives (`InputError`, a 422, beyond: nothing is searched), and fetches
at most `MAX_PROPAGATION_HITS` nearest-neighbour results in all (each source's search deepens only
while it can still change the result, and never beyond `MAX_QUERY_RESULTS`; `SearchService._rank`). The crop and frame-image caches are bounded in bytes
(`VIDSEARCH_CROP_CACHE_MB`, `VIDSEARCH_FRAME_CACHE_MB`) as well as in entries.

Similarity is cosine similarity: 1 - Weaviate's cosine distance. Errors: `NotFoundError` for an unknown
collection / video / frame / object / propagation, `InputError` for invalid parameters.
"""

from __future__ import annotations

import bisect
import collections as _collections
import html
import io
import logging
import math
import os
import re
import threading
import unicodedata
import uuid
import zipfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vidsearch.errors import InputError, NotFoundError
from vidsearch.models import modelstore
from vidsearch.params import COLLECTION_NAME_RE
from vidsearch.settings import number_from_env
from vidsearch.stores import catalog as cat
from vidsearch.stores import storage
from vidsearch.stores.browse import CatalogBrowser
from vidsearch.stores.index import MAX_QUERY_RESULTS, ObjectIndex, Query, StoredVector
from vidsearch.stores.labels import POLARITIES, POSITIVE, LabelStore, Polarity
from vidsearch.stores.transcripts import TranscriptStore

log = logging.getLogger(__name__)

MAX_K = 200
MAX_TEXT = 500
# Query by example: the uploaded image's bounds, checked before its pixels are decoded.
MAX_QUERY_IMAGE_BYTES = 10 * 1024 * 1024
MAX_QUERY_IMAGE_PIXELS = 40_000_000
QUERY_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")
MAX_LABEL_NAME = 200
MAX_LABEL_IDS = 1000
# Objects one label call may reach through its tracks (a track of a long static scene is large).
MAX_TRACK_LABEL_OBJECTS = 100_000
MAX_PROPAGATION_LIMIT = 10_000
# Per propagation: human positives (sources) and negatives it takes; beyond, a 422 (nothing is searched).
MAX_PROPAGATION_SOURCES = 1_000
MAX_PROPAGATION_NEGATIVES = 1_000
# Per propagation: nearest-neighbour results fetched over all its sources (each source gets its share).
MAX_PROPAGATION_HITS = 100_000
# Candidates whose vectors are fetched and scored against the negatives at once.
_SCORE_CHUNK = 2_000
# Id lists up to this size are sent to Weaviate as filters; longer ones are applied afterwards.
MAX_ID_FILTER = 2_000
# Results grouped by track: the first fetch takes this many objects per wanted track (members of one
# track are near-identical, so they crowd the nearest neighbours), then doubles as usual.
TRACK_OVERFETCH = 10
GROUPS = ("object", "track")
# What propagation scores and spreads between: objects, or whole tracks (by their track vectors).
PROPAGATION_UNITS = ("object", "track")
# Near-vector searches of one propagation in flight at once (one per source).
PROPAGATION_SEARCH_THREADS = 4
# What each propagation source asks for first (`SearchService._rank` deepens where needed).
PROPAGATION_FIRST_FETCH = 10
# One propagation by track labels at most this many objects (the members of its best tracks).
MAX_PROPAGATION_OBJECTS = 100_000
# Transcript search: keyword (BM25) or hybrid (BM25 fused with the text embedding of the query).
TRANSCRIPT_MODES = ("keyword", "hybrid")
# The combined query reads at most this many matching chunks (then says it was cut: `truncated`).
MAX_MOMENT_CHUNKS = 10_000
# Object ids listed per moment (its `object_count` counts them all).
MAX_MOMENT_OBJECTS = 50
# The padding of a visible range may not exceed this (s); by default it is half the sampling interval.
MAX_TOLERANCE_S = 60.0
# Where a video has no two sampled frames in a segment to measure its sampling interval by (s).
DEFAULT_SAMPLING_S = 1.0
# Detections of a label without a track are one sighting while apart by at most this many intervals.
SIGHTING_GAP_INTERVALS = 1.5
SEARCH_DEVICE_ENV = "VIDSEARCH_SEARCH_DEVICE"
# The in-memory JPEG caches of the API process, in MiB (besides their entry counts).
CROP_CACHE_MB_ENV = "VIDSEARCH_CROP_CACHE_MB"
FRAME_CACHE_MB_ENV = "VIDSEARCH_FRAME_CACHE_MB"
DEFAULT_CROP_CACHE_MB = 64
DEFAULT_FRAME_CACHE_MB = 64


# ------------------------------------------------------------------------------------------- caches


class LRUCache:
    """A small thread-safe LRU map (values computed outside the lock; a race computes twice, harmlessly).

    Bounded by entries (`maxsize`) and, when `max_bytes` is given, by the summed `len()` of its values
    (bytes): the least recently used entries go first, and a value larger than `max_bytes` is returned
    but not kept."""

    def __init__(self, maxsize: int, max_bytes: int | None = None):
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._data: _collections.OrderedDict[Any, Any] = _collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _size(value: Any) -> int:
        return len(value) if isinstance(value, (bytes, bytearray, memoryview)) else 0

    def get_or_compute(self, key: Any, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = compute()
        size = self._size(value)
        if self.max_bytes is not None and size > self.max_bytes:
            return value
        with self._lock:
            if key in self._data:
                self.nbytes -= self._size(self._data[key])
            self._data[key] = value
            self.nbytes += size
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize or (self.max_bytes is not None and self.nbytes > self.max_bytes):
                _, dropped = self._data.popitem(last=False)
                self.nbytes -= self._size(dropped)
        return value

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.nbytes = 0


def cache_bytes_from_env(name: str, default_mb: int) -> int:
    """A cache bound in bytes from an environment variable in MiB (`0` disables the cache)."""
    mb = number_from_env(name, float(default_mb), float, lo=0, hi=1_000_000, error=InputError, unit="MiB")
    return int(mb * 2**20)


_EMBEDDERS: dict[tuple[str, str], Any] = {}
_EMBEDDERS_LOCK = threading.Lock()


@dataclass
class _LoadedEmbedder:
    embedder: Any
    lock: threading.Lock  # tokenizers are not safe under concurrent calls


def cached_embedder(model_path: str, device: str) -> _LoadedEmbedder:
    """The `Embedder` for a model folder, loaded once per process (per device)."""
    key = (model_path, device)
    with _EMBEDDERS_LOCK:
        loaded = _EMBEDDERS.get(key)
        if loaded is None:
            from vidsearch.models.embed import Embedder

            loaded = _LoadedEmbedder(Embedder(model_path, device=device), threading.Lock())
            _EMBEDDERS[key] = loaded
    return loaded


# ----------------------------------------------------------------------------------- source videos

# The staged source's file suffix -> its media type (the container decides, not the codec).
MEDIA_TYPES_BY_SUFFIX = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".avi": "video/x-msvideo",
    ".ts": "video/mp2t",
    ".m2ts": "video/mp2t",
    ".mts": "video/mp2t",
    ".mpg": "video/mpeg",
    ".mpeg": "video/mpeg",
    ".ogv": "video/ogg",
    ".ogg": "video/ogg",
    ".3gp": "video/3gpp",
    ".3g2": "video/3gpp2",
    ".flv": "video/x-flv",
    ".wmv": "video/x-ms-wmv",
    ".asf": "video/x-ms-asf",
}
# Without a suffix: ffprobe's format name (its first name decides; matroska is refined by codec).
MEDIA_TYPES_BY_FORMAT = {
    "mov": "video/mp4",
    "mp4": "video/mp4",
    "matroska": "video/x-matroska",
    "webm": "video/webm",
    "avi": "video/x-msvideo",
    "mpegts": "video/mp2t",
    "mpeg": "video/mpeg",
    "ogg": "video/ogg",
    "flv": "video/x-flv",
    "asf": "video/x-ms-asf",
}
# RFC 6381 codec strings for `canPlayType` (a representative profile: the manifest keeps no profile or
# level, so the answer is a good guess; the player's error event has the last word).
_CODECS = {
    "h264": "avc1.42E01E",
    "hevc": "hvc1.1.6.L93.B0",
    "vp8": "vp8",
    "vp9": "vp9",
    "av1": "av01.0.05M.08",
    "mpeg4": "mp4v.20.8",
    "theora": "theora",
    "aac": "mp4a.40.2",
    "mp3": "mp3",
    "opus": "opus",
    "vorbis": "vorbis",
    "flac": "flac",
}
_CODECS_IN_MP4 = {"vp9": "vp09.00.10.08", "opus": "opus", "mp3": "mp4a.6B", "flac": "fLaC"}
_WEBM_CODECS = {"vp8", "vp9", "av1", "opus", "vorbis"}


def video_media_type(source_uri: str, manifest: dict[str, Any]) -> str:
    """The media type of a staged source (`video/mp4`, `video/webm`, `video/x-matroska`, ...): from its
    file suffix, else from ffprobe's container name; `application/octet-stream` when neither is known."""
    suffix = Path(source_uri.rsplit("/", 1)[-1]).suffix.lower()
    if suffix in MEDIA_TYPES_BY_SUFFIX:
        return MEDIA_TYPES_BY_SUFFIX[suffix]
    first = str(manifest.get("container") or "").split(",")[0].strip().lower()
    found = MEDIA_TYPES_BY_FORMAT.get(first, "application/octet-stream")
    if found == "video/x-matroska" and _all_webm(manifest):
        return "video/webm"
    return found


def _all_webm(manifest: dict[str, Any]) -> bool:
    codecs = [manifest.get("video_codec"), manifest.get("audio_codec")]
    return all(c in _WEBM_CODECS for c in codecs if c)


def playback_type(media_type: str, manifest: dict[str, Any]) -> str:
    """The type to ask a browser's `canPlayType` about: the media type with a `codecs` parameter, e.g.
    `video/mp4; codecs="avc1.42E01E, mp4a.40.2"`; the bare media type when a codec has no known name.

    Browsers play by demuxer, not by label: QuickTime files go through the MP4 demuxer (Chromium plays
    an H.264 .mov but answers "" for `video/quicktime`), Matroska with WebM codecs through the WebM one;
    so those are asked as `video/mp4` and `video/webm`."""
    if media_type == "video/quicktime":
        media_type = "video/mp4"
    elif media_type == "video/x-matroska" and _all_webm(manifest):
        media_type = "video/webm"
    table = {**_CODECS, **_CODECS_IN_MP4} if media_type == "video/mp4" else _CODECS
    names = [manifest.get("video_codec"), manifest.get("audio_codec")]
    codecs = [table.get(str(n)) for n in names if n]
    if not codecs or any(c is None for c in codecs):
        return media_type
    return f'{media_type}; codecs="{", ".join(c for c in codecs if c)}"'


@dataclass(frozen=True)
class StoredVideo:
    """Where a video's staged source is and what it is (what the ranged video route serves)."""

    uri: str
    size: int
    media_type: str
    etag: str  # from the content hash: the staged source never changes under its video id
    filename: str


# ------------------------------------------------------------------------------------------ helpers


def validate_label_name(name: Any) -> str:
    """Label names are any text of 1-200 characters, kept exactly as given, except control characters
    (Unicode category Cc: NUL, which Postgres text cannot hold, newlines, tabs, ...): a name that looks
    like another one but is not ("cat" and "cat\\n") is refused rather than stored."""
    if not isinstance(name, str):
        raise InputError("label name must be a string")
    if not 1 <= len(name) <= MAX_LABEL_NAME:
        raise InputError(f"label name must be 1-{MAX_LABEL_NAME} characters, got {len(name)}")
    if "\x00" in name:
        raise InputError("label name must not contain NUL characters")
    bad = next((ch for ch in name if unicodedata.category(ch) == "Cc"), None)
    if bad is not None:
        raise InputError(f"label name must not contain control characters, got {bad!r}")
    return name


def is_collection_name(name: Any) -> bool:
    """Whether `name` is a valid collection name, the whole string (a trailing newline is not)."""
    return isinstance(name, str) and COLLECTION_NAME_RE.fullmatch(name) is not None


def _uuid(value: Any, what: str = "object id") -> str:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise InputError(f"invalid {what} {str(value)[:80]!r}: expected a UUID") from None


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi):  # also rejects NaN
        raise InputError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")


def _query_text(q: Any, name: str = "q") -> str:
    """A text query: 1-`MAX_TEXT` characters, not blank."""
    if not isinstance(q, str) or not 1 <= len(q) <= MAX_TEXT:
        raise InputError(f"{name} must be 1-{MAX_TEXT} characters")
    if not q.strip():
        raise InputError(f"{name} must not be blank")
    return q


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K}, got {k}")


def _check_times(from_s: float | None, to_s: float | None) -> None:
    """Optional times in a video: each finite and >= 0, `from_s` not after `to_s`."""
    for name, value in (("from_s", from_s), ("to_s", to_s)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise InputError(f"{name} must be a time >= 0 in seconds, got {value!r}")
    if from_s is not None and to_s is not None and from_s > to_s:
        raise InputError(f"from_s ({from_s:g}) is after to_s ({to_s:g})")


# ------------------------------------------------------------------------------------ transcripts

_WORD = re.compile(r"\w+", re.UNICODE)
# websearch_to_tsquery's operators: a word after '-' is excluded, a bare "or" is an operator.
_EXCLUDED_WORD = re.compile(r"(?:^|\s)-\"?(\w+)", re.UNICODE)


def query_terms(q: str) -> set[str]:
    """The words of a web-search query that a matching text holds (lower-case): every word but the
    `or` operator and words excluded with a leading '-'."""
    excluded = {w.lower() for w in _EXCLUDED_WORD.findall(q)}
    return {w.lower() for w in _WORD.findall(q)} - excluded - {"or"}


def highlight(text: str, terms: Iterable[str]) -> str:
    """`text` HTML-escaped, each word of it among `terms` (compared lower-case) wrapped in
    `<mark>...</mark>`: safe to set as innerHTML (the words are matched before escaping, so an
    entity such as `&amp;` is never taken apart)."""
    wanted = {t.lower() for t in terms}
    out: list[str] = []
    last = 0
    for m in _WORD.finditer(text):
        out.append(html.escape(text[last : m.start()], quote=True))
        word = html.escape(m.group(0), quote=True)
        out.append(f"<mark>{word}</mark>" if m.group(0).lower() in wanted else word)
        last = m.end()
    out.append(html.escape(text[last:], quote=True))
    return "".join(out)


A = TypeVar("A")
B = TypeVar("B")


def merge_intervals(intervals: Iterable[tuple[float, float, A]]) -> list[tuple[float, float, list[A]]]:
    """The union of closed intervals (start, end, payload): overlapping or touching ones become one,
    carrying its members' payloads in start order; the result is sorted and disjoint."""
    merged: list[tuple[float, float, list[A]]] = []
    for start, end, payload in sorted(intervals, key=lambda i: (i[0], i[1])):
        if start > end:
            raise ValueError(f"interval starts after it ends: {start} > {end}")
        if merged and start <= merged[-1][1]:
            first, last, payloads = merged[-1]
            merged[-1] = (first, max(last, end), [*payloads, payload])
        else:
            merged.append((start, end, [payload]))
    return merged


def intersect_intervals(
    a: Iterable[tuple[float, float, A]], b: Iterable[tuple[float, float, B]]
) -> list[tuple[float, float, A, B]]:
    """Every overlapping pair of a closed interval of `a` and one of `b` (touching counts: a zero-length
    overlap), as (max of the starts, min of the ends, a's payload, b's payload), ordered by start,
    then end. Either input in any order; nested and overlapping intervals are fine."""
    left = sorted(a, key=lambda i: (i[0], i[1]))
    right = sorted(b, key=lambda i: (i[0], i[1]))
    for start, end, _ in (*left, *right):
        if start > end:
            raise ValueError(f"interval starts after it ends: {start} > {end}")
    starts = [r[0] for r in right]
    # The running maximum of the ends: everything before the first reaching a start ends before it.
    reach: list[float] = []
    for r in right:
        reach.append(max(reach[-1], r[1]) if reach else r[1])
    out: list[tuple[float, float, A, B]] = []
    for start, end, pa in left:
        lo = bisect.bisect_left(reach, start)
        hi = bisect.bisect_right(starts, end)
        for r_start, r_end, pb in right[lo:hi]:
            if r_end >= start:
                out.append((max(start, r_start), min(end, r_end), pa, pb))
    out.sort(key=lambda t: (t[0], t[1]))
    return out


def visible_ranges(
    sightings: Iterable[dict[str, Any]], max_gap: float, pad: float
) -> list[tuple[float, float, dict[str, Any]]]:
    """The time ranges a set of detections (object_id, track_id, label, pts_s) shows something, each
    [first pts - pad, last pts + pad] (never before 0) with its track id, detector label and object
    ids: a track's detections are one range (its tracker linked them); detections without a track
    are grouped per detector label, a new range starting where the gap to the previous exceeds
    `max_gap`."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in sorted(sightings, key=lambda s: (s["pts_s"], s["object_id"])):
        key = ("track", s["track_id"]) if s.get("track_id") else ("label", s["label"])
        groups.setdefault(key, []).append(s)
    ranges: list[tuple[float, float, dict[str, Any]]] = []
    for (kind, _), members in groups.items():
        runs: list[list[dict[str, Any]]] = []
        for s in members:
            if runs and (kind == "track" or s["pts_s"] - runs[-1][-1]["pts_s"] <= max_gap):
                runs[-1].append(s)
            else:
                runs.append([s])
        for run in runs:
            info = {
                "track_id": run[0].get("track_id"),
                "label": run[0]["label"],
                "objects": [(s["pts_s"], s["object_id"]) for s in run],
            }
            ranges.append((max(0.0, run[0]["pts_s"] - pad), run[-1]["pts_s"] + pad, info))
    ranges.sort(key=lambda r: (r[0], r[1]))
    return ranges


# ------------------------------------------------------------------------------------------ service


class SearchService:
    """Search and labeling on one catalog and one object index. Thread-safe; one per process is enough."""

    def __init__(
        self,
        catalog: cat.Catalog,
        index: ObjectIndex | Callable[[], ObjectIndex],
        *,
        tiny_models: bool = False,
        model_cache: str | None = None,
        device: str | None = None,
        crop_cache_size: int = 4096,
        frame_cache_size: int = 64,
        crop_cache_bytes: int | None = None,
        frame_cache_bytes: int | None = None,
        max_propagation_sources: int = MAX_PROPAGATION_SOURCES,
        max_propagation_negatives: int = MAX_PROPAGATION_NEGATIVES,
        max_propagation_hits: int = MAX_PROPAGATION_HITS,
    ):
        self.catalog = catalog
        self.browser = CatalogBrowser(catalog.engine)
        self.labels = LabelStore(catalog.engine)
        self.transcripts = TranscriptStore(catalog.engine)
        self._index: ObjectIndex | None = None
        self._index_factory: Callable[[], ObjectIndex] | None = None
        if isinstance(index, ObjectIndex):
            self._index = index
        else:
            self._index_factory = index
        self.tiny_models = tiny_models
        self.model_cache = model_cache
        self.device = device or os.environ.get(SEARCH_DEVICE_ENV, "cpu")
        if crop_cache_bytes is None:
            crop_cache_bytes = cache_bytes_from_env(CROP_CACHE_MB_ENV, DEFAULT_CROP_CACHE_MB)
        if frame_cache_bytes is None:
            frame_cache_bytes = cache_bytes_from_env(FRAME_CACHE_MB_ENV, DEFAULT_FRAME_CACHE_MB)
        self.crops = LRUCache(crop_cache_size, crop_cache_bytes)  # (collection, object_id) -> JPEG bytes
        self.frame_images = LRUCache(frame_cache_size, frame_cache_bytes)  # (bundle_uri, member) -> JPEG bytes
        self.max_propagation_sources = max_propagation_sources
        self.max_propagation_negatives = max_propagation_negatives
        self.max_propagation_hits = max_propagation_hits
        # Collection rows never change once registered (a collection is pinned to its embedding
        # space) and are never deleted: found ones are kept, saving a query on every request.
        self._collection_rows: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_services(cls, svc: Any, **kwargs: Any) -> SearchService:
        """From a `vidsearch.pipeline.Services` (catalog, lazy index, model settings)."""
        return cls(svc.catalog, svc.index, tiny_models=svc.tiny_models, model_cache=svc.model_cache, **kwargs)

    @property
    def index(self) -> ObjectIndex:
        if self._index is None:
            assert self._index_factory is not None
            self._index = self._index_factory()
        return self._index

    # -- browse ----------------------------------------------------------------------------
    def collections(self) -> list[dict[str, Any]]:
        return self.browser.collections()

    def require_collection(self, collection: str) -> dict[str, Any]:
        if not is_collection_name(collection):
            raise NotFoundError(f"no collection {str(collection)[:80]!r}")
        row = self._collection_rows.get(collection)
        if row is None:
            row = self.catalog.get_collection(collection)
            if row is None:  # not remembered: it may be registered by the next ingest
                raise NotFoundError(f"no collection {collection!r}")
            self._collection_rows[collection] = row
        return row

    def videos(self, collection: str) -> list[dict[str, Any]]:
        """The collection's videos, each with the media type of its staged source and the type (with
        codecs) a browser's `canPlayType` can judge (the storage URI itself stays inside)."""
        self.require_collection(collection)
        out = self.browser.videos(collection)
        for video in out:
            manifest = video.pop("manifest")
            media_type = video_media_type(video.pop("source_uri"), manifest)
            video["media_type"] = media_type
            video["playback_type"] = playback_type(media_type, manifest)
        return out

    def require_video(self, collection: str, video_id: str) -> None:
        self.require_collection(collection)
        if not self.browser.has_video(collection, video_id):
            raise NotFoundError(f"no video {video_id[:80]!r} in collection {collection!r}")

    def video_source(self, collection: str, video_id: str) -> StoredVideo:
        """The staged source video of `video_id` (its URI, size and media type), for serving it."""
        self.require_collection(collection)
        row = self.catalog.get_video(collection, video_id)
        if row is None:
            raise NotFoundError(f"no video {video_id[:80]!r} in collection {collection!r}")
        uri = row["source_uri"]
        try:
            nbytes = storage.size(uri)
        except FileNotFoundError:
            raise NotFoundError(f"the stored source of video {video_id[:80]!r} is missing") from None
        manifest = row.get("manifest") or {}
        media_type = video_media_type(uri, manifest)
        suffix = Path(uri.rsplit("/", 1)[-1]).suffix.lower()
        return StoredVideo(
            uri=uri,
            size=nbytes,
            media_type=media_type,
            etag=f'"sha256-{row["content_sha256"]}"',
            filename=f"{video_id}{suffix if suffix in MEDIA_TYPES_BY_SUFFIX else ''}",
        )

    def frames(self, collection: str, video_id: str, offset: int = 0, limit: int = 200) -> dict[str, Any]:
        """One page of a video's frames ordered by time, each with its objects."""
        if offset < 0:
            raise InputError(f"offset must be >= 0, got {offset}")
        if not 1 <= limit <= 1000:
            raise InputError(f"limit must be between 1 and 1000, got {limit}")
        self.require_video(collection, video_id)
        return self.browser.frame_page(collection, video_id, offset, limit)

    def video_tracks(self, collection: str, video_id: str) -> list[dict[str, Any]]:
        """The video's tracks in time order, with the labels their members carry (a timeline)."""
        self.require_video(collection, video_id)
        return self.browser.video_tracks(collection, video_id)

    def frame_image(self, collection: str, video_id: str, segment_index: int, frame_index: int) -> bytes:
        """The stored JPEG of one frame, as stored (no re-encoding)."""
        self.require_video(collection, video_id)
        row = self.browser.frame(collection, video_id, segment_index, frame_index)
        if row is None:
            raise NotFoundError(f"no frame {segment_index}/{frame_index} of video {video_id[:80]!r} in {collection!r}")
        uri, member = row["bundle_uri"], row["member"]
        return self.frame_images.get_or_compute((uri, member), lambda: _read_member(uri, member))

    def get_object(self, collection: str, object_id: str) -> dict[str, Any]:
        self.require_collection(collection)
        found = self.objects_by_id(collection, [object_id])
        if not found:
            raise NotFoundError(f"no object {object_id!r} in collection {collection!r}")
        return found[_uuid(object_id)]

    def objects_by_id(self, collection: str, object_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Objects (with their labels) by id; unknown ids are left out."""
        return self.browser.objects_by_id(collection, list(dict.fromkeys(_uuid(i) for i in object_ids)))

    def crop(self, collection: str, object_id: str) -> bytes:
        """JPEG of the object's box, cut from its stored frame (cached in memory)."""
        self.require_collection(collection)
        oid = _uuid(object_id)

        def cut() -> bytes:
            from PIL import Image

            from vidsearch.media.bundle import read_frame
            from vidsearch.models.embed import crop_box
            from vidsearch.records import Box

            row = self.browser.crop_source(collection, oid)
            if row is None:
                raise NotFoundError(f"no object {oid!r} in collection {collection!r}")
            frame = np.asarray(read_frame(row["bundle_uri"], row["frame_index"]).convert("RGB"))
            # The same pixels the embedder saw (integer-rounded, clipped, at least 1x1).
            pixels = crop_box(frame, Box(x0=row["x0"], y0=row["y0"], x1=row["x1"], y1=row["y1"]))
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="JPEG", quality=90)
            return buf.getvalue()

        return self.crops.get_or_compute((collection, oid), cut)

    # -- search ----------------------------------------------------------------------------
    def _search(
        self,
        collection: str,
        vector: Query,
        *,
        k: int = 20,
        min_similarity: float = 0.0,
        video_id: str | None = None,
        detector_label: str | None = None,
        label: str | None = None,
        exclude: set[str] | frozenset[str] = frozenset(),
        group: str = "object",
        exclude_track: str | None = None,
        from_s: float | None = None,
        to_s: float | None = None,
    ) -> list[dict[str, Any]]:
        """Objects nearest to `vector` (Object + similarity), best first, after every filter; with
        `group="track"`, tracks instead (see `_tracks`), each once, ranked by their best member.

        The search options every search takes: `k`, `min_similarity`, the filters `video_id`,
        `detector_label`, `label` (positive), `from_s`/`to_s` (time in the video), and `group`."""
        if group not in GROUPS:
            raise InputError(f"group must be one of {', '.join(GROUPS)}, got {group!r}")
        _check_times(from_s, to_s)
        _check_k(k)
        _check_range("min_similarity", min_similarity, -1.0, 1.0)
        if label is not None:
            validate_label_name(label)
        allowed: set[str] | None = None
        ids_filter: list[str] | None = None
        if label is not None:
            allowed = set(self.labels.object_ids(collection, label, POSITIVE))
            allowed -= exclude
            if not allowed:
                return []
            if len(allowed) <= MAX_ID_FILTER:
                ids_filter = sorted(allowed)
        post_exclude = set(exclude)
        exclude_filter: list[str] | None = None
        if exclude and len(exclude) <= MAX_ID_FILTER:
            exclude_filter = sorted(exclude)
            post_exclude = set()

        # Over-fetch: what the post-filters may remove (and, by track, the members of tracks already
        # found), then double until k survive or nothing is left.
        fetch = k + len(post_exclude)
        if allowed is not None and len(allowed) > MAX_ID_FILTER:
            fetch = max(fetch, 4 * k)
        if group == "track":
            fetch = max(fetch, TRACK_OVERFETCH * k)
        while True:
            hits = self.index.near_with_tracks(
                collection,
                vector,
                fetch,
                min_similarity,
                video_id=video_id,
                detector_label=detector_label,
                ids=ids_filter,
                exclude_ids=exclude_filter,
                from_s=from_s,
                to_s=to_s,
            )
            kept = [h for h in hits if h[0] not in exclude and (allowed is None or h[0] in allowed)]
            if group == "track":
                # Weaviate holds each object's part; finalize recorded which track each part joined.
                tracks_of = self.catalog.tracks_of_parts(collection, sorted({t for _, _, t in kept if t}))
                kept = _best_per_track([(o, sim, tracks_of.get(t, t) if t else t) for o, sim, t in kept], exclude_track)
            if len(kept) >= k or len(hits) < min(fetch, MAX_QUERY_RESULTS) or fetch >= MAX_QUERY_RESULTS:
                break
            fetch = min(fetch * 2, MAX_QUERY_RESULTS)
        kept = kept[:k]
        objs = self.objects_by_id(collection, [oid for oid, _, _ in kept])
        results = []
        for oid, sim, _ in kept:
            obj = objs.get(oid)
            if obj is not None:  # in Weaviate but not (yet) in Postgres: mid-ingest, skip it
                results.append({**obj, "similarity": sim})
        return self._tracks(collection, results) if group == "track" else results

    def _tracks(self, collection: str, best: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Track results from their best members: track id, video, time range, member count,
        detector label and the best member (Object + similarity). A track finalize has not written
        yet (mid-ingest) is described by its best member alone."""
        rows = self.catalog.tracks_by_id(collection, [o["track_id"] for o in best if o.get("track_id")])
        out = []
        for obj in best:
            track_id = obj.get("track_id") or obj["object_id"]
            row = rows.get(track_id)
            out.append(
                {
                    "track_id": track_id,
                    "video_id": obj["video_id"],
                    "start_pts_s": row["start_pts_s"] if row else obj["pts_s"],
                    "end_pts_s": row["end_pts_s"] if row else obj["pts_s"],
                    "object_count": row["object_count"] if row else 1,
                    "label": row["label"] if row else obj["detector_label"],
                    "similarity": obj["similarity"],
                    "best": obj,
                }
            )
        return out

    def similar(self, collection: str, object_id: str, **options: Any) -> dict[str, Any]:
        """The query object's nearest neighbours by its stored vector. `options`: the search options
        (`_search`).

        Excluded: the query object itself, and objects labeled negative for any label the query
        object carries positively; by track (`group="track"`), the query object's own track too
        (its members are the same thing seen in neighbouring frames).
        """
        self.require_collection(collection)
        query = self.get_object(collection, object_id)
        positive = [lb["name"] for lb in query["labels"] if lb["polarity"] == POSITIVE]
        exclude = {query["object_id"]}
        if positive:
            exclude |= self.labels.negative_for_any(collection, positive)
        # Weaviate reads the query object's vector itself: one call, not a fetch and a search.
        results = self._search(
            collection,
            StoredVector(query["object_id"]),
            exclude=exclude,
            exclude_track=query.get("track_id"),
            **options,
        )
        return {"query": query, "results": results}

    def embedder_for(self, collection: str) -> tuple[str, Any]:
        """(model id, loaded embedder) of the collection's embedding space."""
        row = self.require_collection(collection)
        model = row["embedder_model"]
        tiny = self.tiny_models or model.startswith("tiny-embedder-")
        cache_dir = Path(self.model_cache) if self.model_cache else modelstore.default_cache_dir()
        path = modelstore.resolve_model(model, "embedder", tiny=tiny, cache_dir=cache_dir)
        if tiny and Path(path).name != model:
            log.warning("collection %s was filled by %s; searching it with %s", collection, model, path)
        loaded = cached_embedder(path, self.device)
        if loaded.embedder.dim != row["embedding_dim"]:
            raise InputError(
                f"the embedder {model!r} gives {loaded.embedder.dim}-d vectors but collection "
                f"{collection!r} holds {row['embedding_dim']}-d ones"
            )
        return model, loaded

    def image_search(
        self, collection: str, data: bytes, *, box: Sequence[float] | None = None, **options: Any
    ) -> dict[str, Any]:
        """Query by example: the objects (or tracks) nearest to an uploaded image, or to the `box`
        [x0, y0, x1, y1] (pixels) of it, embedded by the collection's embedder as a crop is.
        `options`: the search options (`_search`)."""
        image = decode_query_image(data)
        height, width = image.shape[:2]
        if box is not None:
            from vidsearch.models.embed import crop_box
            from vidsearch.records import Box

            x0, y0, x1, y1 = _query_box(box, width, height)
            image = np.ascontiguousarray(crop_box(image, Box(x0=x0, y0=y0, x1=x1, y1=y1)))
        _, loaded = self.embedder_for(collection)
        with loaded.lock:
            vector = loaded.embedder.embed_images([image], batch_size=1)[0]
        results = self._search(collection, vector, **options)
        query = {"width": width, "height": height, "box": list(box) if box is not None else None}
        return {"query": query, "results": results}

    def text_search(self, collection: str, q: str, **options: Any) -> dict[str, Any]:
        """The objects (or tracks) nearest to the text `q` in the collection's embedding space (the
        CLIP text tower). `options`: the search options (`_search`)."""
        _query_text(q)
        return {"query": q, "results": self._search(collection, self._text_vector(collection, q), **options)}

    def _text_vector(self, collection: str, q: str) -> np.ndarray:
        """`q` embedded by the collection's embedder's text tower (the space of its crops)."""
        _, loaded = self.embedder_for(collection)
        if not loaded.embedder.supports_text:
            raise InputError(f"the embedder of collection {collection!r} has no text tower")
        with loaded.lock:
            vector: np.ndarray = loaded.embedder.embed_texts([q])[0]
        return vector

    # -- transcripts -----------------------------------------------------------------------
    def transcript_search(
        self,
        collection: str,
        q: str,
        *,
        mode: str = "keyword",
        k: int = 20,
        alpha: float = 0.5,
        video_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """The transcript moments best matching `q`, best first, at most `k`: by BM25 on the chunk
        text (`mode="keyword"`), or BM25 fused with the cosine similarity of the chunks' text
        embeddings to `q`'s (`mode="hybrid"`, `alpha` the weight of the vector side: 0 keyword only,
        1 vector only). Each moment: chunk_id, video_id, segment_index, start_s, end_s, text,
        highlighted (the escaped text with `q`'s words in `<mark>`), language, score, and frame (the
        sampled frame nearest its start: segment_index, frame_index, pts_s; None if none)."""
        self.require_collection(collection)
        _query_text(q)
        if mode not in TRANSCRIPT_MODES:
            raise InputError(f"mode must be one of {', '.join(TRANSCRIPT_MODES)}, got {mode!r}")
        _check_k(k)
        _check_range("alpha", alpha, 0.0, 1.0)
        if mode == "keyword":
            hits = self.index.transcript_keyword(collection, q, k, video_id=video_id)
        else:
            vector = self._text_vector(collection, q)
            hits = self.index.transcript_hybrid(collection, q, vector, k, alpha, video_id=video_id)
        found = self.transcripts.chunks_by_id(collection, [cid for cid, _ in hits])
        # In Weaviate but not (yet) in Postgres: mid-ingest, left out.
        results = [{**found[cid], "score": score} for cid, score in hits if cid in found]
        return self._as_moments(collection, results, query_terms(q))

    def _as_moments(
        self, collection: str, chunks: list[dict[str, Any]], terms: set[str] | None
    ) -> list[dict[str, Any]]:
        """Chunks with their nearest sampled frame (and, given `terms`, their highlighted text)."""
        near = self.transcripts.nearest_frames(
            collection, [(c["video_id"], c["segment_index"], c["start_s"]) for c in chunks]
        )
        out = []
        for chunk, frame in zip(chunks, near):
            extra = {"highlighted": highlight(chunk["text"], terms)} if terms is not None else {}
            out.append({**chunk, **extra, "frame": frame})
        return out

    def video_transcript(
        self, collection: str, video_id: str, from_s: float | None = None, to_s: float | None = None
    ) -> dict[str, Any]:
        """The video's transcript chunks in time order (those overlapping `from_s`..`to_s`, where
        given), each with its nearest sampled frame, and each segment's audio state."""
        _check_times(from_s, to_s)
        self.require_video(collection, video_id)
        chunks = self.transcripts.video_transcript(collection, video_id, from_s, to_s)
        return {
            "video_id": video_id,
            "chunks": self._as_moments(collection, chunks, None),
            "audio": self.transcripts.audio_status(collection, video_id),
        }

    def moments(
        self,
        collection: str,
        said: str,
        *,
        visible_label: str | None = None,
        label: str | None = None,
        video_id: str | None = None,
        tolerance_s: float | None = None,
    ) -> dict[str, Any]:
        """ "Said X while Y is visible": the chunks matching `said` (Postgres full text, every match up
        to `MAX_MOMENT_CHUNKS`) intersected in time with the ranges where objects with detector label
        `visible_label`, or carrying the label `label` positively, are visible (either, or both: any
        of them). A track is visible from its first to its last detection in the matches; detections
        without a track group per detector label while within `SIGHTING_GAP_INTERVALS` sampling
        intervals; each range is padded by `tolerance_s` (default: half the video's sampling interval).

        Returns {"videos": [{"video_id", "moments": [...]}], "chunks_matched", "truncated"}; a
        moment is one overlap [max(starts), min(ends)] of a chunk with the union of the visible
        ranges: start_s, end_s, the chunk (with its highlighted text), the track ids and detector
        labels seen, the object ids seen in it (at most `MAX_MOMENT_OBJECTS`; `object_count` all),
        and the sampled frame nearest its start."""
        self.require_collection(collection)
        _query_text(said, "said")
        if visible_label is None and label is None:
            raise InputError("name what is visible: visible_label (a detector label) or label (a label name)")
        if visible_label is not None and not 1 <= len(visible_label) <= MAX_LABEL_NAME:
            raise InputError(f"visible_label must be 1-{MAX_LABEL_NAME} characters")
        if label is not None:
            validate_label_name(label)
        if tolerance_s is not None:
            _check_range("tolerance_s", tolerance_s, 0.0, MAX_TOLERANCE_S)
        found = self.transcripts.fulltext(collection, said, video_id=video_id, limit=MAX_MOMENT_CHUNKS + 1)
        truncated = len(found) > MAX_MOMENT_CHUNKS
        found = found[:MAX_MOMENT_CHUNKS]
        by_video: dict[str, list[dict[str, Any]]] = {}
        for chunk in found:
            by_video.setdefault(chunk["video_id"], []).append(chunk)
        videos = sorted(by_video)
        sightings: dict[str, list[dict[str, Any]]] = {}
        for s in self.transcripts.sightings(collection, videos, detector_label=visible_label, label=label):
            sightings.setdefault(s["video_id"], []).append(s)
        steps = self.transcripts.sampling_intervals(collection, videos)
        terms = query_terms(said)
        out: list[dict[str, Any]] = []
        for vid in videos:
            if vid not in sightings:
                continue
            step = steps.get(vid, DEFAULT_SAMPLING_S)
            pad = step / 2 if tolerance_s is None else tolerance_s
            visible = merge_intervals(visible_ranges(sightings[vid], SIGHTING_GAP_INTERVALS * step, pad))
            overlaps = intersect_intervals([(c["start_s"], c["end_s"], c) for c in by_video[vid]], visible)
            moments = [_moment(start, end, chunk, ranges, pad, terms) for start, end, chunk, ranges in overlaps]
            if moments:
                out.append({"video_id": vid, "moments": moments})
        flat = [m for v in out for m in v["moments"]]
        near = self.transcripts.nearest_frames(
            collection, [(m["chunk"]["video_id"], m["chunk"]["segment_index"], m["start_s"]) for m in flat]
        )
        for moment, frame in zip(flat, near):
            moment["frame"] = frame
        return {"videos": out, "chunks_matched": len(found), "truncated": truncated}

    # -- labels ----------------------------------------------------------------------------
    def label_counts(self, collection: str) -> list[dict[str, Any]]:
        """Per name: human positive, human negative and propagated (effective) label counts."""
        self.require_collection(collection)
        return self.labels.counts(collection)

    def _targets(self, collection: str, object_ids: Sequence[Any], track_ids: Sequence[Any]) -> list[str]:
        """The objects a label call names: `object_ids` and every member of `track_ids`."""
        if not object_ids and not track_ids:
            raise InputError("object_ids or track_ids must name at least one object")
        if len(track_ids) > MAX_LABEL_IDS:
            raise InputError(f"track_ids must hold at most {MAX_LABEL_IDS} ids, got {len(track_ids)}")
        by_track = self.catalog.track_object_ids(collection, [_uuid(t, "track id") for t in track_ids])
        members = [o for rows in by_track.values() for o in rows]
        ids = [_uuid(i) for i in object_ids] + members
        if len(ids) > MAX_TRACK_LABEL_OBJECTS:
            raise InputError(f"a label call may reach at most {MAX_TRACK_LABEL_OBJECTS} objects, got {len(ids)}")
        if track_ids and not members:
            raise NotFoundError("none of the tracks exists in this collection")
        return list(dict.fromkeys(ids))

    def add_labels(
        self,
        collection: str,
        object_ids: Sequence[str],
        name: str,
        polarity: Polarity,
        actor: str,
        track_ids: Sequence[str] = (),
    ) -> int:
        """Set a human label on objects (replacing a propagated one of the same name); `track_ids`
        label every member of those tracks, in the same transaction (one call, one undo)."""
        self.require_collection(collection)
        validate_label_name(name)
        if polarity not in POLARITIES:
            raise InputError(f"polarity must be {' or '.join(map(repr, POLARITIES))}, got {polarity!r}")
        if len(object_ids) > MAX_LABEL_IDS:
            raise InputError(f"object_ids must hold at most {MAX_LABEL_IDS} ids, got {len(object_ids)}")
        return self.labels.add(collection, self._targets(collection, object_ids, track_ids), name, polarity, actor)

    def remove_labels(
        self, collection: str, object_ids: Sequence[str], name: str, actor: str, track_ids: Sequence[str] = ()
    ) -> int:
        """Remove human labels `name` from objects (and every member of `track_ids`); propagated
        labels are left alone."""
        self.require_collection(collection)
        validate_label_name(name)
        if len(object_ids) > MAX_LABEL_IDS:
            raise InputError(f"object_ids must hold at most {MAX_LABEL_IDS} ids, got {len(object_ids)}")
        return self.labels.remove(collection, self._targets(collection, object_ids, track_ids), name, actor)

    def events(self, collection: str, name: str, limit: int = 100) -> list[dict[str, Any]]:
        """The audit trail of one label name, newest first."""
        self.require_collection(collection)
        validate_label_name(name)
        if not 1 <= limit <= 1000:
            raise InputError(f"limit must be between 1 and 1000, got {limit}")
        return self.labels.events(collection, name, limit)

    # -- propagation -----------------------------------------------------------------------
    def _candidates(self, collection: str, name: str, threshold: float, limit: int, unit: str) -> _Candidates:
        """What propagating `name` would label (see `propagation_preview`)."""
        _check_range("threshold", threshold, 0.0, 1.0)
        if not 1 <= limit <= MAX_PROPAGATION_LIMIT:
            raise InputError(f"limit must be between 1 and {MAX_PROPAGATION_LIMIT}, got {limit}")
        if unit not in PROPAGATION_UNITS:
            raise InputError(f"unit must be one of {', '.join(PROPAGATION_UNITS)}, got {unit!r}")
        validate_label_name(name)
        # Reads at most one id past each bound: enough to refuse, never the whole of a huge label.
        max_src, max_neg = self.max_propagation_sources, self.max_propagation_negatives
        sources, negatives = self.labels.human_labeled(collection, name, limits=(max_src + 1, max_neg + 1))
        if not sources:
            raise InputError(f"no object is labeled positive with {name!r} by a person: nothing to propagate")
        if len(sources) > max_src:
            raise InputError(
                f"label {name!r} has more than {max_src} human positives: propagation takes at most "
                f"{max_src} sources (remove some, or split the label)"
            )
        if len(negatives) > max_neg:
            raise InputError(
                f"label {name!r} has more than {max_neg} human negatives: propagation takes at most "
                f"{max_neg} negatives (remove some, or split the label)"
            )
        # By object the items scored are the labelled objects and their neighbours; by track, the
        # labelled objects' tracks (a track holding both a positive and a negative counts as a source)
        # and their neighbouring tracks, scored by their track vectors.
        near: Callable[..., list[tuple[str, float]]]
        fetch: Callable[[str, Sequence[str]], dict[str, np.ndarray]]
        if unit == "object":
            source_items, negative_items = sources, negatives
            near, fetch = self.index.near, self.index.vectors
        else:
            track_of = self.catalog.tracks_of_objects(collection, sources + negatives)
            source_items = sorted({track_of[s] for s in sources if s in track_of})
            negative_items = sorted({track_of[n] for n in negatives if n in track_of} - set(source_items))
            near, fetch = self.index.near_tracks, self.index.track_vectors
        vectors = fetch(collection, source_items + negative_items)
        if unit == "track" and not any(t in vectors for t in source_items):
            raise InputError(
                f"the objects labeled {name!r} have no track vectors yet (their videos were indexed before "
                "tracks had vectors, or are still being ingested): re-run their ingest, or propagate by object"
            )
        ranked = self._rank(
            [vectors[i] for i in source_items if i in vectors],
            [vectors[i] for i in negative_items if i in vectors],
            set(source_items) | set(negative_items),
            threshold,
            limit,
            lambda v, n: near(collection, v, n, threshold),
            lambda ids: fetch(collection, ids),
        )
        if unit == "object":
            return _Candidates(sources, negatives, ranked, [])
        members = self.catalog.track_object_ids(collection, [t for t, _ in ranked])
        human = set(sources) | set(negatives)
        objects: list[tuple[str, float]] = []
        tracks: list[dict[str, Any]] = []
        for track_id, score in ranked:
            ids = [o for o in members.get(track_id, []) if o not in human]
            if not ids:
                continue
            if len(objects) + len(ids) > MAX_PROPAGATION_OBJECTS:
                break  # the best tracks that fit: one propagation labels at most this many objects
            objects.extend((o, score) for o in ids)
            tracks.append({"track_id": track_id, "score": score, "object_count": len(ids)})
        return _Candidates(sources, negatives, objects, tracks)

    def _rank(
        self,
        source_vectors: list[np.ndarray],
        negative_vectors: list[np.ndarray],
        human: set[str],
        threshold: float,
        limit: int,
        near: Callable[[np.ndarray, int], list[tuple[str, float]]],
        fetch: Callable[[list[str]], dict[str, np.ndarray]],
    ) -> list[tuple[str, float]]:
        """[(id, score)] best first, at most `limit`: the items (`near` searches them, `fetch` reads
        their vectors) scored `best source similarity - max(best negative similarity, 0)`, each at
        least `threshold`, none of the `human`-labelled ones.

        The searches deepen only where they must. Each source first asks for its few nearest
        (`PROPAGATION_FIRST_FETCH`, or its share of `2 x limit`); `tau`, the `limit`-th best score so
        far (the threshold until `limit` are scored), only rises. A source whose list came back full
        with its last similarity still at least `tau` may hide more that could enter the top `limit`,
        so it asks again for four times as many; the others cannot (a score is at most its source
        similarity), so they stop. The result is the one-by-one computation's (every source searched
        to the end of what can qualify) for far fewer results fetched. The human-labelled are dropped
        from the hits (a list they crowd deepens like any other). `max_propagation_hits` bounds the
        results fetched in all; a propagation that reaches it is cut there (logged)."""
        if not source_vectors:
            return []
        negs = _normalised(np.stack(negative_vectors)) if negative_vectors else None
        best_pos: dict[str, float] = {}
        neg_term: dict[str, float] = {}  # max(best negative similarity, 0) of the candidates scored

        def tau() -> float:
            if len(neg_term) < limit:
                return threshold
            scores = sorted((best_pos[i] - t for i, t in neg_term.items()), reverse=True)
            return max(threshold, scores[limit - 1])

        def score_new(changed: set[str]) -> None:
            """Score the changed candidates that can still qualify (their negative term is fixed)."""
            bar = tau()
            todo = sorted(i for i in changed if i not in neg_term and best_pos[i] >= bar)
            if negs is None:
                neg_term.update(dict.fromkeys(todo, 0.0))
                return
            for start in range(0, len(todo), _SCORE_CHUNK):
                chunk = todo[start : start + _SCORE_CHUNK]
                cand = fetch(chunk)
                ids = [i for i in chunk if i in cand]
                if ids:
                    matrix = _normalised(np.stack([cand[i] for i in ids]))
                    for i, neg in zip(ids, (matrix @ negs.T).max(axis=1)):
                        neg_term[i] = max(float(neg), 0.0)

        budget = self.max_propagation_hits
        fetched = 0
        pending = list(range(len(source_vectors)))
        per = min(MAX_QUERY_RESULTS, max(PROPAGATION_FIRST_FETCH, math.ceil(2 * limit / len(source_vectors))))
        workers = min(PROPAGATION_SEARCH_THREADS, len(source_vectors))
        with ThreadPoolExecutor(workers, thread_name_prefix="vidsearch-propagation-search") as pool:
            while pending:
                ask = min(per, (budget - fetched) // len(pending))
                if ask < 1:
                    log.warning(
                        "propagation cut at %d nearest-neighbour results (max_propagation_hits): %d sources "
                        "could still find candidates",
                        fetched,
                        len(pending),
                    )
                    break
                results = list(pool.map(lambda i, ask=ask: near(source_vectors[i], ask), pending))
                changed: set[str] = set()
                for hits in results:
                    fetched += len(hits)
                    for oid, sim in hits:
                        if oid not in human and sim > best_pos.get(oid, -2.0):
                            best_pos[oid] = sim
                            changed.add(oid)
                score_new(changed)
                bar = tau()
                pending = [
                    i
                    for i, hits in zip(pending, results)
                    if len(hits) == ask and hits and hits[-1][1] >= bar and ask < MAX_QUERY_RESULTS
                ]
                per = min(4 * ask, MAX_QUERY_RESULTS)
        scored = [(i, best_pos[i] - t) for i, t in neg_term.items()]
        ranked = sorted(((i, float(s)) for i, s in scored if s >= threshold), key=lambda t: (-t[1], t[0]))
        return ranked[:limit]

    def propagation_preview(
        self, collection: str, name: str, threshold: float, limit: int = 1000, unit: str = "object"
    ) -> dict[str, Any]:
        """What propagating `name` at `threshold` would label, best first: with `unit="object"`, up
        to `limit` objects, each scored `best similarity to a human positive - max(best similarity
        to a human negative, 0)`; with `unit="track"`, up to `limit` tracks scored so by their track
        vectors against the tracks of the human-labelled objects, every member of a chosen track
        taking its track's score (members labelled `name` by a person are left as they are; at most
        `MAX_PROPAGATION_OBJECTS` objects in all). `count` counts objects."""
        self.require_collection(collection)
        found = self._candidates(collection, name, threshold, limit, unit)
        return {
            "count": len(found.ranked),
            "candidates": [{"object_id": i, "score": s} for i, s in found.ranked],
            "tracks": found.tracks,
        }

    def propagate(
        self, collection: str, name: str, threshold: float, limit: int, actor: str, unit: str = "object"
    ) -> dict[str, Any]:
        """Store the preview's candidates as propagated positive labels, with provenance."""
        row = self.require_collection(collection)
        found = self._candidates(collection, name, threshold, limit, unit)
        return self.labels.record_propagation(
            collection,
            name,
            sources=found.sources,
            negatives=found.negatives,
            model=row["embedder_model"],
            threshold=threshold,
            candidates=found.ranked,
            actor=actor,
            unit=unit,
        )

    def propagations(self, collection: str, name: str) -> list[dict[str, Any]]:
        self.require_collection(collection)
        validate_label_name(name)
        return self.labels.propagations(collection, name)

    def get_propagation(self, collection: str, propagation_id: str) -> dict[str, Any]:
        self.require_collection(collection)
        return self.labels.get_propagation(collection, _uuid(propagation_id, "propagation id"))

    def undo_propagation(self, collection: str, propagation_id: str, actor: str) -> int:
        """Remove the labels this propagation stored (and still owns). Undoing twice removes nothing."""
        self.require_collection(collection)
        return self.labels.undo_propagation(collection, _uuid(propagation_id, "propagation id"), actor)


def _moment(
    start: float, end: float, chunk: dict[str, Any], ranges: list[dict[str, Any]], pad: float, terms: set[str]
) -> dict[str, Any]:
    """One overlap of a chunk with a union of visible ranges (see `SearchService.moments`)."""
    seen = sorted({oid for r in ranges for pts, oid in r["objects"] if start - pad <= pts <= end + pad})
    return {
        "start_s": start,
        "end_s": end,
        "chunk": {**chunk, "highlighted": highlight(chunk["text"], terms)},
        "track_ids": sorted({r["track_id"] for r in ranges if r["track_id"]}),
        "labels": sorted({r["label"] for r in ranges}),
        "object_ids": seen[:MAX_MOMENT_OBJECTS],
        "object_count": len(seen),
    }


@dataclass(frozen=True)
class _Candidates:
    sources: list[str]  # the human positives
    negatives: list[str]  # the human negatives
    ranked: list[tuple[str, float]]  # (object id, score), best first
    tracks: list[dict[str, Any]]  # by track: the chosen tracks (track_id, score, object_count)


def decode_query_image(data: bytes) -> np.ndarray:
    """An uploaded query image as RGB uint8: JPEG, PNG or WebP, at most `MAX_QUERY_IMAGE_BYTES` and
    `MAX_QUERY_IMAGE_PIXELS` (checked on the header, before the pixels are decoded)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InputError("the image is empty")
    if len(data) > MAX_QUERY_IMAGE_BYTES:
        raise InputError(f"the image is larger than {MAX_QUERY_IMAGE_BYTES // (1024 * 1024)} MiB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in QUERY_IMAGE_FORMATS:
                raise InputError(f"the image must be {', '.join(QUERY_IMAGE_FORMATS)}, not {img.format}")
            width, height = img.size
            if width * height > MAX_QUERY_IMAGE_PIXELS:
                raise InputError(f"the image has {width}x{height} pixels; at most {MAX_QUERY_IMAGE_PIXELS:,}")
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError("not a readable image (JPEG, PNG or WebP)") from exc


def _query_box(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        raise InputError("box must be four finite numbers: x0, y0, x1, y1")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise InputError(f"box {x0:g},{y0:g},{x1:g},{y1:g} is not a box inside the {width}x{height} image")
    return x0, y0, x1, y1


def _best_per_track(
    hits: Sequence[tuple[str, float, str | None]], exclude_track: str | None
) -> list[tuple[str, float, str | None]]:
    """The best hit of each track (hits best first; an object without a track is its own)."""
    seen: set[str] = set()
    out = []
    for oid, sim, track in hits:
        key = track or oid
        if key in seen or (exclude_track is not None and key == exclude_track):
            continue
        seen.add(key)
        out.append((oid, sim, track))
    return out


def _normalised(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), in float64."""
    matrix = matrix.astype(np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _read_member(bundle_uri: str, member: str) -> bytes:
    """One stored member of a frame bundle (a ranged read on object storage)."""
    with storage.open_uri(bundle_uri) as fh:
        try:
            with zipfile.ZipFile(fh) as zf:
                return zf.read(member)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise NotFoundError(f"frame {member!r} unreadable in {bundle_uri}: {exc}") from exc
