"""The vector index: detected objects in Weaviate (weaviate-client v4).

One Weaviate collection per catalog collection (`VideoObjects_<name>`), because each catalog collection
is pinned to one embedding space (vectors of different models must never be compared). Vectors are
self-provided (our embedder computes them); the distance is cosine. Object ids are the deterministic
uuid5 of `records.object_id`, and batch import overwrites an existing id, so re-runs never duplicate.
Batch errors are checked and raised; transient server errors are retried with backoff here and,
after that, surface as `TransientError` for the orchestrator's retries.

Reads for search: stored vectors by id, and nearest neighbours of a vector (cosine similarity, i.e.
1 - Weaviate's cosine distance) with the video, detector-label and id filters applied inside Weaviate.

Tracks live beside the objects, in `VideoTracks_<name>` (same embedding space, its own HNSW graph, so
object search pays no filter for them): one object per track of a video, its vector the mean of its
members' L2-normalised embeddings, re-normalised (`TrackVector`), linked to its members through
`parts` (the part ids its member objects carry as `track_id`). Index time writes one per segment-local
part; finalize replaces those that stitching joined (`vidsearch.tracks.sync_track_vectors`).

Transcripts live in `VideoTranscripts_<name>`: one object per transcript chunk (uuid = its chunk id),
its `text` BM25-indexed (word tokenization), its vector the chunk's text embedding in the collection's
space (when the audio branch supplies one: keyword search needs none). Keyword search is BM25 on
`text`; hybrid fuses it with a near-vector search around a supplied query vector (`alpha`: 0 keyword
only, 1 vector only), Weaviate's relative-score fusion.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import tenacity
import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.exceptions import (
    UnexpectedStatusCodeError,
    WeaviateBaseError,
    WeaviateConnectionError,
    WeaviateQueryError,
    WeaviateStartUpError,
)

from vidsearch.errors import InputError, NotFoundError, TransientError
from vidsearch.params import COLLECTION_NAME_RE, INDEX_SETTINGS_ENV, IndexSettings
from vidsearch.records import DetectedObject, TranscriptChunk

log = logging.getLogger(__name__)

BATCH_SIZE = 500
# Weaviate's QUERY_MAXIMUM_RESULTS default: no single query returns more.
MAX_QUERY_RESULTS = 10_000
T = TypeVar("T")


def _text(name: str) -> Property:
    return Property(name=name, data_type=DataType.TEXT, skip_vectorization=True)


# Where an object or a track is: what re-indexing a segment and deleting it filter on.
_PLACE = [_text("collection"), _text("video_id"), Property(name="segment_index", data_type=DataType.INT)]

PROPERTIES = [
    *_PLACE,
    Property(name="frame_index", data_type=DataType.INT),
    Property(name="pts_s", data_type=DataType.NUMBER),
    Property(name="box", data_type=DataType.NUMBER_ARRAY),
    _text("label"),
    Property(name="score", data_type=DataType.NUMBER),
    # The object's part of a track (its segment-local track's index-time id; catalog.track_parts maps it
    # to the stitched track); empty for objects indexed before tracks.
    _text("track_id"),
]


TRACK_PROPERTIES = [
    *_PLACE,  # a track's segment is that of its earliest member: re-indexing it replaces the track
    Property(name="start_pts_s", data_type=DataType.NUMBER),
    Property(name="end_pts_s", data_type=DataType.NUMBER),
    _text("label"),
    Property(name="object_count", data_type=DataType.INT),
    # The part ids of its members (their `track_id` in the object collection), sorted.
    Property(name="parts", data_type=DataType.TEXT_ARRAY, skip_vectorization=True),
]


TRANSCRIPT_PROPERTIES = [
    *_PLACE,
    Property(
        name="text",
        data_type=DataType.TEXT,
        tokenization=Tokenization.WORD,
        index_searchable=True,
        skip_vectorization=True,
    ),
    Property(name="start_s", data_type=DataType.NUMBER),
    Property(name="end_s", data_type=DataType.NUMBER),
    _text("language"),
]
# The only property keyword and hybrid search read (video ids and languages are never matched).
TRANSCRIPT_SEARCHED = ["text"]


@dataclass(frozen=True)
class TrackVector:
    """One track as the track collection holds it; `vector` is its unit-length mean embedding."""

    track_id: str
    video_id: str
    segment_index: int
    start_pts_s: float
    end_pts_s: float
    label: str
    object_count: int
    parts: tuple[str, ...]
    vector: np.ndarray


@dataclass(frozen=True)
class StoredVector:
    """A search's query vector as the vector stored for an object: Weaviate reads it itself
    (`near_object`), one call instead of a fetch and a search."""

    object_id: str


Query = np.ndarray | Sequence[float] | StoredVector


def validate_collection_name(collection: str) -> str:
    if not COLLECTION_NAME_RE.fullmatch(collection):
        raise InputError(
            f"invalid collection name {collection!r}: use 1-63 lowercase letters, digits or '_', starting with a letter"
        )
    return collection


def weaviate_collection_name(collection: str) -> str:
    """`demo` -> `VideoObjects_demo` (Weaviate class names must start upper-case)."""
    return f"VideoObjects_{validate_collection_name(collection)}"


def default_index_settings() -> IndexSettings:
    """`VIDSEARCH_INDEX_SETTINGS` (JSON of `IndexSettings`), else the defaults."""
    raw = os.environ.get(INDEX_SETTINGS_ENV, "").strip()
    if not raw:
        return IndexSettings()
    try:
        return IndexSettings.model_validate_json(raw)
    except ValueError as exc:
        raise InputError(f"{INDEX_SETTINGS_ENV} is not valid index settings: {exc}") from None


def hnsw_config(settings: IndexSettings) -> Any:
    """The weaviate-client HNSW configuration of `settings` (cosine distance)."""
    q = Configure.VectorIndex.Quantizer
    rescore = settings.rescore_limit
    quantizer = {
        "none": None,
        "rq8": lambda: q.rq(bits=8, rescore_limit=rescore),
        "rq1": lambda: q.rq(bits=1, rescore_limit=rescore),
        "sq": lambda: q.sq(rescore_limit=rescore),
        "pq": lambda: q.pq(),
        "bq": lambda: q.bq(),
    }[settings.quantizer]
    return Configure.VectorIndex.hnsw(
        distance_metric=VectorDistances.COSINE,
        ef=settings.ef,
        dynamic_ef_min=settings.dynamic_ef_min,
        dynamic_ef_max=settings.dynamic_ef_max,
        dynamic_ef_factor=settings.dynamic_ef_factor,
        ef_construction=settings.ef_construction,
        max_connections=settings.max_connections,
        quantizer=quantizer() if quantizer else None,
    )


def settings_of(config: Any) -> IndexSettings:
    """`IndexSettings` of a collection's configuration as weaviate-client reads it back."""
    vc = config.vector_config
    index = (vc.get("default") or next(iter(vc.values()))).vector_index_config if vc else config.vector_index_config
    quantizer = index.quantizer
    kind = "none"
    rescore = None
    if quantizer is not None:
        name = type(quantizer).__name__.lower()
        if "rq" in name:
            kind = "rq1" if getattr(quantizer, "bits", 8) == 1 else "rq8"
        elif "sq" in name:
            kind = "sq"
        elif "pq" in name:
            kind = "pq"
        elif "bq" in name:
            kind = "bq"
        rescore = getattr(quantizer, "rescore_limit", None)
        if kind not in ("rq8", "rq1", "sq") or (rescore is not None and rescore < 1):
            rescore = None
    return IndexSettings(
        ef=index.ef,
        dynamic_ef_min=index.dynamic_ef_min,
        dynamic_ef_max=index.dynamic_ef_max,
        dynamic_ef_factor=index.dynamic_ef_factor,
        ef_construction=index.ef_construction,
        max_connections=index.max_connections,
        quantizer=kind,
        rescore_limit=rescore,
    )


def weaviate_tracks_name(collection: str) -> str:
    """`demo` -> `VideoTracks_demo`: the tracks of a catalog collection."""
    return f"VideoTracks_{validate_collection_name(collection)}"


def weaviate_transcripts_name(collection: str) -> str:
    """`demo` -> `VideoTranscripts_demo`: the transcript chunks of a catalog collection."""
    return f"VideoTranscripts_{validate_collection_name(collection)}"


def is_transient(exc: BaseException) -> bool:
    """Server-side 5xx, 429, timeouts and connection failures are worth retrying."""
    if isinstance(exc, UnexpectedStatusCodeError):
        return exc.status_code >= 500 or exc.status_code == 429
    if isinstance(exc, _BatchError):
        return exc.transient
    return isinstance(
        exc,
        (WeaviateConnectionError, WeaviateStartUpError, WeaviateQueryError, ConnectionError, TimeoutError),
    )


def _retrying(fn: Callable[[], T], what: str, attempts: int = 4) -> T:
    """Run `fn`, retrying transient failures with exponential backoff; then raise TransientError."""
    try:
        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=tenacity.wait_exponential(multiplier=0.5, max=8),
            stop=tenacity.stop_after_attempt(attempts),
            reraise=True,
        ):
            with attempt:
                return fn()
    except WeaviateBaseError as exc:
        if is_transient(exc):
            raise TransientError(f"weaviate unavailable while {what}: {exc}") from exc
        raise
    raise AssertionError("unreachable")  # pragma: no cover


def segment_filter(video_id: str, segment_index: int | None = None) -> Any:
    f = Filter.by_property("video_id").equal(video_id)
    if segment_index is not None:
        f = f & Filter.by_property("segment_index").equal(segment_index)
    return f


class ObjectIndex:
    """Detected objects of every catalog collection, on one Weaviate client.

    Takes a connected client, or a function returning one: then the connection is made on first
    use, with the same retries and error typing as every other call.
    """

    def __init__(self, client: weaviate.WeaviateClient | Callable[[], weaviate.WeaviateClient]):
        self._client: weaviate.WeaviateClient | None = None
        self._connect: Callable[[], weaviate.WeaviateClient] | None = None
        self._existing: set[str] = set()  # collections seen to exist (they are never dropped here)
        if isinstance(client, weaviate.WeaviateClient):
            self._client = client
        else:
            self._connect = client

    @property
    def client(self) -> weaviate.WeaviateClient:
        if self._client is None:
            assert self._connect is not None
            self._client = _retrying(self._connect, "connecting")
        return self._client

    def ensure_collection(self, collection: str, settings: IndexSettings | None = None) -> str:
        """Create the Weaviate collections (objects, tracks) if needed, with `settings` (else
        `default_index_settings()`); an existing one keeps its own. Returns the objects' name.
        Safe under concurrency."""
        settings = settings or default_index_settings()
        self._ensure(weaviate_tracks_name(collection), TRACK_PROPERTIES, settings)
        return self._ensure(weaviate_collection_name(collection), PROPERTIES, settings)

    def index_settings(self, collection: str) -> IndexSettings:
        """The settings the collection's object index was created with, read back from Weaviate."""
        config = _retrying(lambda: self._coll(collection).config.get(), f"reading the schema of {collection}")
        return settings_of(config)

    def _ensure(self, name: str, properties: list[Property], settings: IndexSettings) -> str:
        def create() -> None:
            if self.client.collections.exists(name):
                return
            try:
                self.client.collections.create(
                    name,
                    properties=properties,
                    vector_config=Configure.Vectors.self_provided(vector_index_config=hnsw_config(settings)),
                )
            except UnexpectedStatusCodeError as exc:
                # Another task created it between exists() and create(): that is fine.
                if not (exc.status_code == 422 and self.client.collections.exists(name)):
                    raise

        _retrying(create, f"creating collection {name}")
        self._ensure_properties(name, properties)
        self._existing.add(name)
        return name

    def _ensure_properties(self, name: str, properties: list[Property]) -> None:
        """Add the properties a collection created by an older version lacks (track_id)."""
        coll = self.client.collections.use(name)
        have = {p.name for p in _retrying(lambda: coll.config.get().properties, f"reading the schema of {name}")}
        for prop in properties:
            if prop.name in have:
                continue

            def add(prop: Property = prop) -> None:
                try:
                    coll.config.add_property(prop)
                except UnexpectedStatusCodeError as exc:
                    # Added by another task meanwhile: fine.
                    if exc.status_code != 422:
                        raise

            _retrying(add, f"adding property {prop.name} to {name}")

    def _coll(self, collection: str) -> Any:
        return self.client.collections.use(weaviate_collection_name(collection))

    def _tracks(self, collection: str) -> Any:
        return self.client.collections.use(weaviate_tracks_name(collection))

    def _exists(self, name: str) -> bool:
        if name not in self._existing and _retrying(lambda: self.client.collections.exists(name), f"looking up {name}"):
            self._existing.add(name)
        return name in self._existing

    def upsert_segment(
        self,
        collection: str,
        video_id: str,
        segment_index: int,
        objects: Sequence[DetectedObject],
        vectors: np.ndarray,
    ) -> int:
        """Make Weaviate hold exactly `objects` for this segment (upsert, then drop stale ids)."""
        if len(objects) != len(vectors):
            raise ValueError(f"{len(objects)} objects but {len(vectors)} vectors")
        coll = self._coll(collection)
        rows = [
            DataObject(
                uuid=o.object_id,
                properties={
                    "collection": collection,
                    "video_id": o.video_id,
                    "segment_index": o.segment_index,
                    "frame_index": o.frame_index,
                    "pts_s": o.pts_s,
                    "box": [o.box.x0, o.box.y0, o.box.x1, o.box.y1],
                    "label": o.label,
                    "score": o.score,
                    "track_id": o.track_id or "",
                },
                vector=vector.astype(float).tolist(),
            )
            for o, vector in zip(objects, vectors)
        ]
        _insert(coll, rows, f"importing objects of {video_id}/{segment_index}")
        keep = {o.object_id for o in objects}
        stale = [u for u in self.ids(collection, video_id, segment_index) if u not in keep]
        _delete(coll, stale, f"deleting stale objects of {video_id}/{segment_index}")
        return len(objects)

    # -- tracks -----------------------------------------------------------------------------
    def upsert_tracks(self, collection: str, tracks: Sequence[TrackVector]) -> int:
        """Write track objects (overwriting those with the same ids)."""
        rows = [
            DataObject(
                uuid=t.track_id,
                properties={
                    "collection": collection,
                    "video_id": t.video_id,
                    "segment_index": t.segment_index,
                    "start_pts_s": t.start_pts_s,
                    "end_pts_s": t.end_pts_s,
                    "label": t.label,
                    "object_count": t.object_count,
                    "parts": list(t.parts),
                },
                vector=np.asarray(t.vector, dtype=float).tolist(),
            )
            for t in tracks
        ]
        _insert(self._tracks(collection), rows, f"importing tracks of {collection}")
        return len(rows)

    def replace_segment_tracks(
        self, collection: str, video_id: str, segment_index: int, tracks: Sequence[TrackVector]
    ) -> int:
        """Make the track collection hold exactly `tracks` among those the segment starts."""
        self.upsert_tracks(collection, tracks)
        keep = {t.track_id for t in tracks}
        stale = [t for t in self.stored_tracks(collection, video_id, segment_index) if t not in keep]
        self.delete_tracks(collection, stale)
        return len(tracks)

    def delete_tracks(self, collection: str, track_ids: Sequence[str]) -> None:
        _delete(self._tracks(collection), list(track_ids), f"deleting tracks of {collection}")

    def stored_tracks(self, collection: str, video_id: str, segment_index: int) -> dict[str, tuple[str, ...]]:
        """{track id: its parts} of the tracks the segment starts (empty where the collection has no
        track collection yet: one made before tracks had vectors)."""
        if not self._exists(weaviate_tracks_name(collection)):
            return {}
        coll = self._tracks(collection)

        def fetch() -> dict[str, tuple[str, ...]]:
            return {
                str(o.uuid): tuple((o.properties or {}).get("parts") or ())
                for o in _fetch_all(coll, segment_filter(video_id, segment_index), properties=["parts"])
            }

        return _retrying(fetch, f"listing tracks of {video_id}/{segment_index}")

    def track_vectors(self, collection: str, track_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored track vectors by track id (ids without a track object are left out)."""
        if not self._exists(weaviate_tracks_name(collection)):
            return {}
        return _vectors(self._tracks(collection), track_ids, f"fetching track vectors in {collection}")

    def near_tracks(
        self,
        collection: str,
        vector: Sequence[float] | np.ndarray,
        limit: int,
        min_similarity: float,
        *,
        exclude_ids: Sequence[str] | None = None,
    ) -> list[tuple[str, float]]:
        """(track id, cosine similarity) of the tracks nearest to `vector`, best first, at most
        `limit`, each at least `min_similarity`, none among `exclude_ids`."""
        if not self._exists(weaviate_tracks_name(collection)):
            return []
        filters = Filter.by_id().contains_none(list(exclude_ids)) if exclude_ids else None
        return [
            (oid, sim)
            for oid, sim, _ in _near(
                self._tracks(collection), vector, limit, min_similarity, filters, f"searching tracks of {collection}"
            )
        ]

    # -- transcripts ------------------------------------------------------------------------
    def ensure_transcript_collection(self, collection: str, settings: IndexSettings | None = None) -> str:
        """Create the collection's transcript collection if needed, with `settings`, else those of its
        object collection (when that exists), else `default_index_settings()`. Returns its name."""
        if settings is None:
            exists = self._exists(weaviate_collection_name(collection))
            settings = self.index_settings(collection) if exists else default_index_settings()
        return self._ensure(weaviate_transcripts_name(collection), TRANSCRIPT_PROPERTIES, settings)

    def _transcripts(self, collection: str) -> Any:
        return self.client.collections.use(weaviate_transcripts_name(collection))

    def replace_segment_transcripts(
        self,
        collection: str,
        video_id: str,
        segment_index: int,
        chunks: Sequence[TranscriptChunk],
        vectors: np.ndarray | None,
    ) -> int:
        """Make the transcript collection hold exactly `chunks` for this segment (upsert by chunk id,
        then drop the segment's stale chunks); `vectors` (one row per chunk) are their text
        embeddings, or None / 0 rows for chunks without one (keyword search still finds them).
        A rejected object raises."""
        rows_of_vectors = 0 if vectors is None else len(vectors)
        if rows_of_vectors not in (0, len(chunks)):
            raise ValueError(f"{len(chunks)} chunks but {rows_of_vectors} vectors")
        matrix = np.asarray(vectors, dtype=np.float64) if vectors is not None and rows_of_vectors else None
        for c in chunks:
            if c.video_id != video_id or c.segment_index != segment_index:
                raise ValueError(f"chunk {c.chunk_id} is not of {video_id}/{segment_index}")
        if weaviate_transcripts_name(collection) not in self._existing:
            self.ensure_transcript_collection(collection)
        coll = self._transcripts(collection)
        rows = [
            DataObject(
                uuid=c.chunk_id,
                properties={
                    "collection": collection,
                    "video_id": c.video_id,
                    "segment_index": c.segment_index,
                    "text": c.text,
                    "start_s": c.start_s,
                    "end_s": c.end_s,
                    "language": c.language or "",
                },
                vector=matrix[i].tolist() if matrix is not None else None,
            )
            for i, c in enumerate(chunks)
        ]
        _insert(coll, rows, f"importing transcript chunks of {video_id}/{segment_index}")
        keep = {c.chunk_id for c in chunks}
        stale = [u for u in self.transcript_ids(collection, video_id, segment_index) if u not in keep]
        _delete(coll, stale, f"deleting stale transcript chunks of {video_id}/{segment_index}")
        return len(rows)

    def transcript_ids(self, collection: str, video_id: str, segment_index: int | None = None) -> list[str]:
        """Every chunk id stored for a video (or one of its segments), sorted; empty where the
        collection has no transcript collection."""
        if not self._exists(weaviate_transcripts_name(collection)):
            return []
        coll = self._transcripts(collection)

        def fetch() -> list[str]:
            return sorted(str(o.uuid) for o in _fetch_all(coll, segment_filter(video_id, segment_index)))

        return _retrying(fetch, f"listing transcript chunks of {video_id}")

    def delete_transcripts(self, collection: str, video_id: str, segment_index: int | None = None) -> None:
        """Remove the transcript chunks of a video (or of one of its segments)."""
        if not self._exists(weaviate_transcripts_name(collection)):
            return
        _retrying(
            functools.partial(
                self._transcripts(collection).data.delete_many, where=segment_filter(video_id, segment_index)
            ),
            f"deleting transcript chunks of {video_id}",
        )

    def transcript_keyword(
        self, collection: str, q: str, k: int, video_id: str | None = None
    ) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) of the chunks best matching `q`, best first, at most `k`."""
        return self._transcript_query(
            collection, f"keyword search in {collection}", "bm25", q, k, video_id, query_properties=TRANSCRIPT_SEARCHED
        )

    def transcript_hybrid(
        self,
        collection: str,
        q: str,
        vector: Sequence[float] | np.ndarray,
        k: int,
        alpha: float,
        video_id: str | None = None,
    ) -> list[tuple[str, float]]:
        """(chunk id, fused score) of the chunks best matching `q` by BM25 and `vector` by cosine
        similarity, fused with weight `alpha` on the vector side (Weaviate's relative-score fusion),
        best first, at most `k`. Chunks stored without a vector score on their keyword side alone."""
        return self._transcript_query(
            collection,
            f"hybrid search in {collection}",
            "hybrid",
            q,
            k,
            video_id,
            query_properties=TRANSCRIPT_SEARCHED,
            vector=[float(x) for x in vector],
            alpha=float(alpha),
        )

    def _transcript_query(
        self, collection: str, what: str, kind: str, q: str, k: int, video_id: str | None, **options: Any
    ) -> list[tuple[str, float]]:
        if not self._exists(weaviate_transcripts_name(collection)):
            return []
        coll = self._transcripts(collection)
        run = coll.query.bm25 if kind == "bm25" else coll.query.hybrid
        filters = Filter.by_property("video_id").equal(video_id) if video_id else None

        def query() -> Any:
            return run(
                q,
                limit=min(k, MAX_QUERY_RESULTS),
                filters=filters,
                return_metadata=MetadataQuery(score=True),
                return_properties=[],
                **options,
            )

        res = _retrying(query, what)
        return [(str(o.uuid), float(o.metadata.score or 0.0)) for o in res.objects]

    def delete_segment(self, collection: str, video_id: str, segment_index: int) -> None:
        """Remove every object of one segment, and the tracks it starts (nothing to do for a
        collection that does not exist)."""
        for name in (weaviate_collection_name(collection), weaviate_tracks_name(collection)):
            if not self._exists(name):
                continue
            _retrying(
                functools.partial(
                    self.client.collections.use(name).data.delete_many, where=segment_filter(video_id, segment_index)
                ),
                f"deleting from {name} for {video_id}/{segment_index}",
            )

    def ids(self, collection: str, video_id: str, segment_index: int | None = None) -> list[str]:
        """Every object id stored for a video (or one of its segments)."""
        coll = self._coll(collection)

        def fetch() -> list[str]:
            return [str(o.uuid) for o in _fetch_all(coll, segment_filter(video_id, segment_index))]

        return _retrying(fetch, f"listing objects of {video_id}")

    def count(self, collection: str, video_id: str, segment_index: int | None = None) -> int:
        coll = self._coll(collection)
        return _retrying(
            lambda: (
                coll.aggregate.over_all(filters=segment_filter(video_id, segment_index), total_count=True).total_count
                or 0
            ),
            f"counting objects of {video_id}",
        )

    # -- search ----------------------------------------------------------------------------
    def vectors(self, collection: str, object_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors by object id (ids missing from the index are left out)."""
        return _vectors(self._coll(collection), object_ids, f"fetching vectors in {collection}")

    def near(
        self, collection: str, vector: Query, limit: int, min_similarity: float, **filters: Any
    ) -> list[tuple[str, float]]:
        """(object id, cosine similarity) of the objects nearest to `vector`: `near_with_tracks`
        without the track ids (same filters)."""
        return [
            (oid, sim) for oid, sim, _ in self.near_with_tracks(collection, vector, limit, min_similarity, **filters)
        ]

    def near_with_tracks(
        self,
        collection: str,
        vector: Query,
        limit: int,
        min_similarity: float,
        *,
        video_id: str | None = None,
        detector_label: str | None = None,
        ids: Sequence[str] | None = None,
        exclude_ids: Sequence[str] | None = None,
        from_s: float | None = None,
        to_s: float | None = None,
    ) -> list[tuple[str, float, str | None]]:
        """(object id, cosine similarity, track id) of the objects nearest to `vector`, best first,
        at most `limit` (and `MAX_QUERY_RESULTS`), each at least `min_similarity`; only objects of
        `video_id`, with `detector_label`, among `ids`, not among `exclude_ids` and seen between
        `from_s` and `to_s` (seconds from the video start, both included), where those are given.
        The track id is the object's part id (`catalog.track_parts` maps it to its stitched track),
        None for objects indexed before tracks."""
        clauses = []
        if video_id:
            clauses.append(Filter.by_property("video_id").equal(video_id))
        if from_s is not None:
            clauses.append(Filter.by_property("pts_s").greater_or_equal(float(from_s)))
        if to_s is not None:
            clauses.append(Filter.by_property("pts_s").less_or_equal(float(to_s)))
        if detector_label:
            clauses.append(Filter.by_property("label").equal(detector_label))
        if ids is not None:
            clauses.append(Filter.by_id().contains_any(list(ids)))
        if exclude_ids:
            clauses.append(Filter.by_id().contains_none(list(exclude_ids)))
        filters = Filter.all_of(clauses) if len(clauses) > 1 else (clauses[0] if clauses else None)
        return _near(
            self._coll(collection), vector, limit, min_similarity, filters, f"searching {collection}", "track_id"
        )


def _near(
    coll: Any,
    vector: Query,
    limit: int,
    min_similarity: float,
    filters: Any,
    what: str,
    track_property: str | None = None,
) -> list[tuple[str, float, str | None]]:
    """(id, cosine similarity, the `track_property` value or None) of `coll`'s nearest objects to
    `vector` (or to the vector stored for a `StoredVector`'s object: NotFoundError when it has none)."""
    options = dict(
        limit=min(limit, MAX_QUERY_RESULTS),
        distance=min(2.0, 1.0 - min_similarity + 1e-6),
        filters=filters,
        return_metadata=MetadataQuery(distance=True),
        return_properties=[track_property] if track_property else [],
    )

    def query() -> Any:
        if not isinstance(vector, StoredVector):
            return coll.query.near_vector(near_vector=[float(x) for x in vector], **options)
        try:
            return coll.query.near_object(near_object=vector.object_id, **options)
        except WeaviateQueryError:
            # The object has no vector here (mid-ingest, or the stores disagree): not worth retrying.
            if coll.query.fetch_object_by_id(vector.object_id) is None:
                raise NotFoundError(f"object {vector.object_id!r} has no vector in the index") from None
            raise

    res = _retrying(query, what)
    hits = []
    for obj in res.objects:
        similarity = 1.0 - float(obj.metadata.distance)
        if similarity >= min_similarity:
            track = (obj.properties or {}).get(track_property) if track_property else None
            hits.append((str(obj.uuid), similarity, track or None))
    return hits


def _vectors(coll: Any, ids: Sequence[str], what: str) -> dict[str, np.ndarray]:
    ids = list(ids)
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        res = _retrying(
            functools.partial(
                coll.query.fetch_objects,
                filters=Filter.by_id().contains_any(chunk),
                limit=len(chunk),
                include_vector=True,
                return_properties=[],
            ),
            what,
        )
        for obj in res.objects:
            out[str(obj.uuid)] = _vector_of(obj)
    return out


def _insert(coll: Any, rows: Sequence[DataObject[Any, Any]], what: str) -> None:
    """Batch-import `rows`, BATCH_SIZE at a time; a failed object raises (`_BatchError`)."""
    for start in range(0, len(rows), BATCH_SIZE):
        chunk = list(rows[start : start + BATCH_SIZE])

        def insert(chunk: list[DataObject[Any, Any]] = chunk) -> None:
            result = coll.data.insert_many(chunk)
            if result.errors:
                first = next(iter(result.errors.values()))
                message = getattr(first, "message", str(first))
                # A server-side failure of part of the batch is transient; a rejected object
                # (wrong dimension, bad property) is not, and must never be dropped silently.
                raise _BatchError(len(result.errors), len(chunk), message)

        _retrying(insert, what)


def _delete(coll: Any, ids: Sequence[str], what: str) -> None:
    for start in range(0, len(ids), BATCH_SIZE):
        chunk = list(ids[start : start + BATCH_SIZE])
        _retrying(functools.partial(coll.data.delete_many, where=Filter.by_id().contains_any(chunk)), what)


def _vector_of(obj: Any) -> np.ndarray:
    vector = obj.vector
    if isinstance(vector, dict):
        vector = vector.get("default", next(iter(vector.values()), None))
    if vector is None:
        raise NotFoundError(f"object {obj.uuid} has no vector")
    return np.asarray(vector, dtype=np.float32)


class _BatchError(WeaviateBaseError):
    def __init__(self, failed: int, total: int, message: str):
        super().__init__(f"{failed} of {total} objects failed to import; first error: {message}")
        self.transient = any(s in message.lower() for s in ("timeout", "unavailable", "connection", "too many", "503"))


def _fetch_all(coll: Any, filters: Any, page: int = 1000, properties: Sequence[str] = ()) -> Iterable[Any]:
    """Page through every object matching `filters` (ids, and `properties`).

    Weaviate's cursor (`after`) cannot be combined with filters, so this pages by offset; the
    server caps offset+limit at QUERY_MAXIMUM_RESULTS (10,000 by default), which bounds one
    segment's objects, the unit this is called for.
    """
    offset = 0
    while True:
        res = coll.query.fetch_objects(
            filters=filters, limit=page, offset=offset, return_properties=list(properties), include_vector=False
        )
        yield from res.objects
        if len(res.objects) < page:
            return
        offset += page
