"""The vector index: detected objects in Weaviate (weaviate-client v4).

One Weaviate collection per catalog collection (`VideoObjects_<name>`), because each catalog collection
is pinned to one embedding space (vectors of different models must never be compared). Vectors are
self-provided (our embedder computes them); the distance is cosine. Object ids are the deterministic
uuid5 of `records.object_id`, and batch import overwrites an existing id, so re-runs never duplicate.
Batch errors are checked and raised; transient server errors are retried with backoff here and,
after that, surface as `TransientError` for the orchestrator's retries.

Reads for search: stored vectors by id, and nearest neighbours of a vector (cosine similarity, i.e.
1 - Weaviate's cosine distance) with the video, detector-label and id filters applied inside Weaviate.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
import tenacity
import weaviate
from weaviate.classes.config import Configure, DataType, Property, VectorDistances
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
from vidsearch.params import COLLECTION_NAME_RE
from vidsearch.records import DetectedObject

log = logging.getLogger(__name__)

BATCH_SIZE = 500
# Weaviate's QUERY_MAXIMUM_RESULTS default: no single query returns more.
MAX_QUERY_RESULTS = 10_000
T = TypeVar("T")

PROPERTIES = [
    Property(name="collection", data_type=DataType.TEXT, skip_vectorization=True),
    Property(name="video_id", data_type=DataType.TEXT, skip_vectorization=True),
    Property(name="segment_index", data_type=DataType.INT),
    Property(name="frame_index", data_type=DataType.INT),
    Property(name="pts_s", data_type=DataType.NUMBER),
    Property(name="box", data_type=DataType.NUMBER_ARRAY),
    Property(name="label", data_type=DataType.TEXT, skip_vectorization=True),
    Property(name="score", data_type=DataType.NUMBER),
    # The object's part of a track (its segment-local track's index-time id; catalog.track_parts maps it
    # to the stitched track); empty for objects indexed before tracks.
    Property(name="track_id", data_type=DataType.TEXT, skip_vectorization=True),
]


def validate_collection_name(collection: str) -> str:
    if not COLLECTION_NAME_RE.fullmatch(collection):
        raise InputError(
            f"invalid collection name {collection!r}: use 1-63 lowercase letters, digits or '_', starting with a letter"
        )
    return collection


def weaviate_collection_name(collection: str) -> str:
    """`demo` -> `VideoObjects_demo` (Weaviate class names must start upper-case)."""
    return f"VideoObjects_{validate_collection_name(collection)}"


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

    def ensure_collection(self, collection: str) -> str:
        """Create the Weaviate collection if needed; returns its name. Safe under concurrency."""
        name = weaviate_collection_name(collection)

        def create() -> None:
            if self.client.collections.exists(name):
                return
            try:
                self.client.collections.create(
                    name,
                    properties=PROPERTIES,
                    vector_config=Configure.Vectors.self_provided(
                        vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
                    ),
                )
            except UnexpectedStatusCodeError as exc:
                # Another task created it between exists() and create(): that is fine.
                if not (exc.status_code == 422 and self.client.collections.exists(name)):
                    raise

        _retrying(create, f"creating collection {name}")
        self._ensure_properties(name)
        return name

    def _ensure_properties(self, name: str) -> None:
        """Add the properties a collection created by an older version lacks (track_id)."""
        coll = self.client.collections.use(name)
        have = {p.name for p in _retrying(lambda: coll.config.get().properties, f"reading the schema of {name}")}
        for prop in PROPERTIES:
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
        for start in range(0, len(objects), BATCH_SIZE):
            chunk = [
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
                    vector=vectors[start + i].astype(float).tolist(),
                )
                for i, o in enumerate(objects[start : start + BATCH_SIZE])
            ]

            def insert(chunk: list[DataObject[Any, Any]] = chunk) -> None:
                result = coll.data.insert_many(chunk)
                if result.errors:
                    first = next(iter(result.errors.values()))
                    message = getattr(first, "message", str(first))
                    # A server-side failure of part of the batch is transient; a rejected object
                    # (wrong dimension, bad property) is not, and must never be dropped silently.
                    raise _BatchError(len(result.errors), len(chunk), message)

            _retrying(insert, f"importing objects of {video_id}/{segment_index}")

        keep = {o.object_id for o in objects}
        stale = [u for u in self.ids(collection, video_id, segment_index) if u not in keep]
        for start in range(0, len(stale), BATCH_SIZE):
            ids = stale[start : start + BATCH_SIZE]
            _retrying(
                functools.partial(coll.data.delete_many, where=Filter.by_id().contains_any(ids)),
                f"deleting stale objects of {video_id}/{segment_index}",
            )
        return len(objects)

    def delete_segment(self, collection: str, video_id: str, segment_index: int) -> None:
        """Remove every object of one segment (nothing to do when the collection does not exist)."""
        name = weaviate_collection_name(collection)
        if not _retrying(lambda: self.client.collections.exists(name), f"looking up {name}"):
            return
        coll = self._coll(collection)
        _retrying(
            lambda: coll.data.delete_many(where=segment_filter(video_id, segment_index)),
            f"deleting objects of {video_id}/{segment_index}",
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
        coll = self._coll(collection)
        ids = list(object_ids)
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
                f"fetching vectors in {collection}",
            )
            for obj in res.objects:
                out[str(obj.uuid)] = _vector_of(obj)
        return out

    def near(
        self, collection: str, vector: Sequence[float] | np.ndarray, limit: int, min_similarity: float, **filters: Any
    ) -> list[tuple[str, float]]:
        """(object id, cosine similarity) of the objects nearest to `vector`: `near_with_tracks`
        without the track ids (same filters)."""
        return [
            (oid, sim) for oid, sim, _ in self.near_with_tracks(collection, vector, limit, min_similarity, **filters)
        ]

    def near_with_tracks(
        self,
        collection: str,
        vector: Sequence[float] | np.ndarray,
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
        coll = self._coll(collection)
        res = _retrying(
            lambda: coll.query.near_vector(
                near_vector=[float(x) for x in vector],
                limit=min(limit, MAX_QUERY_RESULTS),
                distance=min(2.0, 1.0 - min_similarity + 1e-6),
                filters=filters,
                return_metadata=MetadataQuery(distance=True),
                return_properties=["track_id"],
            ),
            f"searching {collection}",
        )
        hits = []
        for obj in res.objects:
            similarity = 1.0 - float(obj.metadata.distance)
            if similarity >= min_similarity:
                hits.append((str(obj.uuid), similarity, (obj.properties or {}).get("track_id") or None))
        return hits


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


def _fetch_all(coll: Any, filters: Any, page: int = 1000) -> Iterable[Any]:
    """Page through every object matching `filters` (ids only).

    Weaviate's cursor (`after`) cannot be combined with filters, so this pages by offset; the
    server caps offset+limit at QUERY_MAXIMUM_RESULTS (10,000 by default), which bounds one
    segment's objects, the unit this is called for.
    """
    offset = 0
    while True:
        res = coll.query.fetch_objects(
            filters=filters, limit=page, offset=offset, return_properties=[], include_vector=False
        )
        yield from res.objects
        if len(res.objects) < page:
            return
        offset += page
