"""Search and labeling over the catalog (Postgres) and the object index (Weaviate), without Airflow.

What the search API (`plugins/vidsearch_api`) serves, as plain methods on `SearchService`:

* browsing: collections, videos, frames (with their objects), single objects, frame images and crops;
* similar objects: a near-vector search in Weaviate from the query object's own stored vector, with the
  video / detector-label filters applied inside Weaviate and the label filter and the negative exclusion
  applied against the labels in Postgres (by id inside Weaviate when the id lists are small, and always
  checked again afterwards), fetching more candidates than asked for until enough survive;
* text search: the collection's own CLIP-family embedder (its text tower) embeds the query into the
  space of the crops; loaded embedders are cached per model per process;
* labels: human labels (positive / negative) with an audit trail; effective labels (one per name and
  object: a human label replaces a propagated one); per-name counts;
* propagation: preview / apply / undo. Sources are the objects labeled positive by a human with the
  name, negatives those labeled negative. Candidates come from a near-vector search around each source;
  a candidate's score is its best cosine similarity to a source minus its best similarity to a negative
  (a negative's similarity counts only when positive: being unlike a negative earns nothing), and
  candidates scoring at least the threshold are proposed, best first. Apply stores them as propagated
  positive labels with provenance (sources, negatives, embedder model, threshold), never overwriting a
  human label; undo removes exactly the labels that propagation still owns.

Similarity is cosine similarity: 1 - Weaviate's cosine distance. Errors: `NotFoundError` for an unknown
collection / video / frame / object / propagation, `InputError` for invalid parameters.
"""

from __future__ import annotations

import collections as _collections
import io
import logging
import os
import threading
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from vidsearch.stores import catalog as cat
from vidsearch.models import modelstore
from vidsearch.stores import storage
from vidsearch.errors import InputError, VidsearchError
from vidsearch.stores.index import COLLECTION_NAME_RE, ObjectIndex, _retrying, weaviate_collection_name

log = logging.getLogger(__name__)

MAX_K = 200
MAX_TEXT = 500
MAX_LABEL_NAME = 200
MAX_LABEL_IDS = 1000
MAX_PROPAGATION_LIMIT = 10_000
# Weaviate's QUERY_MAXIMUM_RESULTS default: no single query returns more.
MAX_QUERY_RESULTS = 10_000
# Id lists up to this size are sent to Weaviate as filters; longer ones are applied afterwards.
MAX_ID_FILTER = 2_000
SEARCH_DEVICE_ENV = "VIDSEARCH_SEARCH_DEVICE"

POSITIVE, NEGATIVE = "positive", "negative"
HUMAN, PROPAGATED = "human", "propagated"


class NotFoundError(VidsearchError):
    """An unknown collection, video, frame, object or propagation (HTTP 404)."""


# ------------------------------------------------------------------------------------------- caches


class LRUCache:
    """A small thread-safe LRU map (values computed outside the lock; a race computes twice, harmlessly)."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._data: _collections.OrderedDict[Any, Any] = _collections.OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Any, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = compute()
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


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


# ------------------------------------------------------------------------------------------ helpers


def validate_label_name(name: Any) -> str:
    """Label names are any text of 1-200 characters, kept exactly as given (NUL excepted: Postgres
    text cannot hold it)."""
    if not isinstance(name, str):
        raise InputError("label name must be a string")
    if not 1 <= len(name) <= MAX_LABEL_NAME:
        raise InputError(f"label name must be 1-{MAX_LABEL_NAME} characters, got {len(name)}")
    if "\x00" in name:
        raise InputError("label name must not contain NUL characters")
    return name


def _uuid(value: Any, what: str = "object id") -> str:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise InputError(f"invalid {what} {str(value)[:80]!r}: expected a UUID") from None


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi):  # also rejects NaN
        raise InputError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")


def _object_dict(row: Any) -> dict[str, Any]:
    return {
        "object_id": str(row.object_id),
        "video_id": row.video_id,
        "segment_index": row.segment_index,
        "frame_index": row.frame_index,
        "pts_s": row.pts_s,
        "box": [row.x0, row.y0, row.x1, row.y1],
        "detector_label": row.label,
        "score": row.score,
        "labels": [],
    }


def _label_dict(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "polarity": row.polarity,
        "source": row.source,
        "score": row.score,
        "propagation_id": str(row.propagation_id) if row.propagation_id else None,
    }


def _event_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object_id": str(row.object_id) if row.object_id else None,
        "name": row.name,
        "action": row.action,
        "polarity": row.polarity,
        "source": row.source,
        "propagation_id": str(row.propagation_id) if row.propagation_id else None,
        "actor": row.actor,
        "at": row.at,
    }


def _propagation_dict(row: Any) -> dict[str, Any]:
    return {
        "propagation_id": str(row.id),
        "name": row.name,
        "sources": list(row.sources),
        "negatives": list(row.negatives),
        "model": row.model,
        "threshold": row.threshold,
        "count": row.count,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "undone_at": row.undone_at,
    }


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ------------------------------------------------------------------------------------------ service


class SearchService:
    """Search and labeling on one catalog and one object index. Thread-safe; one per process is enough."""

    def __init__(
        self,
        catalog: cat.Catalog,
        index: ObjectIndex | Callable[[], ObjectIndex],
        *,
        tiny_models: bool = False,
        model_cache: Optional[str] = None,
        device: Optional[str] = None,
        crop_cache_size: int = 4096,
        frame_cache_size: int = 64,
    ):
        self.catalog = catalog
        self._index = index if isinstance(index, ObjectIndex) else None
        self._index_factory = None if isinstance(index, ObjectIndex) else index
        self.tiny_models = tiny_models
        self.model_cache = model_cache
        self.device = device or os.environ.get(SEARCH_DEVICE_ENV, "cpu")
        self.crops = LRUCache(crop_cache_size)  # (collection, object_id) -> JPEG bytes
        self.frame_images = LRUCache(frame_cache_size)  # (bundle_uri, member) -> JPEG bytes

    @classmethod
    def from_services(cls, svc: Any, **kwargs: Any) -> "SearchService":
        """From a `vidsearch.pipeline.Services` (catalog, lazy index, model settings)."""
        return cls(
            svc.catalog, svc.index, tiny_models=svc.tiny_models, model_cache=svc.model_cache, **kwargs
        )

    @property
    def engine(self) -> sa.Engine:
        return self.catalog.engine

    @property
    def index(self) -> ObjectIndex:
        if self._index is None:
            self._index = self._index_factory()
        return self._index

    def _wv(self, collection: str) -> Any:
        return self.index.client.collections.use(weaviate_collection_name(collection))

    # -- browse ----------------------------------------------------------------------------
    def collections(self) -> list[dict[str, Any]]:
        c, v, o = cat.collections, cat.videos, cat.objects
        videos = (
            sa.select(sa.func.count()).select_from(v).where(v.c.collection == c.c.name).scalar_subquery()
        )
        objects = (
            sa.select(sa.func.count()).select_from(o).where(o.c.collection == c.c.name).scalar_subquery()
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.c.name, c.c.embedder_model, c.c.embedding_dim, videos.label("videos"),
                          objects.label("objects")).order_by(c.c.name)
            ).all()
        return [dict(r._mapping) for r in rows]

    def require_collection(self, collection: str) -> dict[str, Any]:
        if not isinstance(collection, str) or not COLLECTION_NAME_RE.match(collection):
            raise NotFoundError(f"no collection {str(collection)[:80]!r}")
        row = self.catalog.get_collection(collection)
        if row is None:
            raise NotFoundError(f"no collection {collection!r}")
        return row

    def videos(self, collection: str) -> list[dict[str, Any]]:
        self.require_collection(collection)
        v, s, f, o = cat.videos, cat.segments, cat.frames, cat.objects

        def count(table: sa.Table, *where: Any) -> Any:
            return (
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.collection == v.c.collection, table.c.video_id == v.c.video_id, *where)
                .scalar_subquery()
            )

        query = sa.select(
            v,
            count(s).label("n_segments"),
            count(s, s.c.state == cat.SegmentState.DONE.value).label("n_done"),
            count(s, s.c.state == cat.SegmentState.QUARANTINED.value).label("n_quarantined"),
            count(f).label("n_frames"),
            count(o).label("n_objects"),
        ).where(v.c.collection == collection).order_by(v.c.created_at, v.c.video_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out = []
        for r in rows:
            manifest = r.manifest or {}
            out.append(
                {
                    "video_id": r.video_id,
                    "source": r.source,
                    "state": r.state,
                    "duration_s": manifest.get("duration_s"),
                    "width": manifest.get("width"),
                    "height": manifest.get("height"),
                    "frame_rate": manifest.get("frame_rate"),
                    "segments": r.n_segments,
                    "segments_done": r.n_done,
                    "segments_quarantined": r.n_quarantined,
                    "frames": r.n_frames,
                    "objects": r.n_objects,
                    "last_run_id": r.last_run_id,
                }
            )
        return out

    def require_video(self, collection: str, video_id: str) -> None:
        self.require_collection(collection)
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(cat.videos.c.video_id).where(
                    cat.videos.c.collection == collection, cat.videos.c.video_id == video_id
                )
            ).first()
        if found is None:
            raise NotFoundError(f"no video {video_id[:80]!r} in collection {collection!r}")

    def frames(self, collection: str, video_id: str, offset: int = 0, limit: int = 200) -> dict[str, Any]:
        """One page of a video's frames ordered by time, each with its objects."""
        if offset < 0:
            raise InputError(f"offset must be >= 0, got {offset}")
        if not 1 <= limit <= 1000:
            raise InputError(f"limit must be between 1 and 1000, got {limit}")
        self.require_video(collection, video_id)
        f = cat.frames
        where = (f.c.collection == collection, f.c.video_id == video_id)
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(f).where(*where)).scalar_one()
            rows = conn.execute(
                sa.select(f.c.segment_index, f.c.frame_index, f.c.pts_s, f.c.width, f.c.height)
                .where(*where)
                .order_by(f.c.pts_s, f.c.segment_index, f.c.frame_index)
                .offset(offset)
                .limit(limit)
            ).all()
            keys = [(r.segment_index, r.frame_index) for r in rows]
            objs: dict[tuple[int, int], list[dict[str, Any]]] = {k: [] for k in keys}
            if keys:
                o = cat.objects
                orows = conn.execute(
                    sa.select(o)
                    .where(
                        o.c.collection == collection,
                        o.c.video_id == video_id,
                        sa.tuple_(o.c.segment_index, o.c.frame_index).in_(keys),
                    )
                    .order_by(o.c.segment_index, o.c.frame_index, o.c.score.desc(), o.c.object_id)
                ).all()
                by_id = {}
                for r in orows:
                    d = _object_dict(r)
                    objs[(r.segment_index, r.frame_index)].append(d)
                    by_id[d["object_id"]] = d
                self._attach_labels(conn, collection, by_id)
        return {
            "total": total,
            "frames": [
                {
                    "segment_index": r.segment_index,
                    "frame_index": r.frame_index,
                    "pts_s": r.pts_s,
                    "width": r.width,
                    "height": r.height,
                    "objects": objs[(r.segment_index, r.frame_index)],
                }
                for r in rows
            ],
        }

    def _frame_row(self, collection: str, video_id: str, segment_index: int, frame_index: int) -> Any:
        f = cat.frames
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(f).where(
                    f.c.collection == collection,
                    f.c.video_id == video_id,
                    f.c.segment_index == segment_index,
                    f.c.frame_index == frame_index,
                )
            ).first()
        if row is None:
            raise NotFoundError(
                f"no frame {segment_index}/{frame_index} of video {video_id[:80]!r} in {collection!r}"
            )
        return row

    def frame_image(self, collection: str, video_id: str, segment_index: int, frame_index: int) -> bytes:
        """The stored JPEG of one frame, as stored (no re-encoding)."""
        self.require_video(collection, video_id)
        row = self._frame_row(collection, video_id, segment_index, frame_index)
        return self.frame_images.get_or_compute(
            (row.bundle_uri, row.member), lambda: _read_member(row.bundle_uri, row.member)
        )

    def get_object(self, collection: str, object_id: str) -> dict[str, Any]:
        self.require_collection(collection)
        found = self.objects_by_id(collection, [object_id])
        if not found:
            raise NotFoundError(f"no object {object_id!r} in collection {collection!r}")
        return found[_uuid(object_id)]

    def objects_by_id(self, collection: str, object_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Objects (with their labels) by id; unknown ids are left out."""
        ids = list(dict.fromkeys(_uuid(i) for i in object_ids))
        out: dict[str, dict[str, Any]] = {}
        if not ids:
            return out
        o = cat.objects
        with self.engine.connect() as conn:
            for chunk in _chunks(ids, 5000):
                for r in conn.execute(
                    sa.select(o).where(o.c.collection == collection, o.c.object_id.in_(list(chunk)))
                ).all():
                    d = _object_dict(r)
                    out[d["object_id"]] = d
            self._attach_labels(conn, collection, out)
        return out

    def _attach_labels(self, conn: sa.Connection, collection: str, objs: dict[str, dict[str, Any]]) -> None:
        if not objs:
            return
        lb = cat.labels
        for chunk in _chunks(list(objs), 5000):
            for r in conn.execute(
                sa.select(lb)
                .where(lb.c.collection == collection, lb.c.object_id.in_(list(chunk)))
                .order_by(lb.c.name)
            ).all():
                objs[str(r.object_id)]["labels"].append(_label_dict(r))

    def crop(self, collection: str, object_id: str) -> bytes:
        """JPEG of the object's box, cut from its stored frame (cached in memory)."""
        self.require_collection(collection)
        oid = _uuid(object_id)

        def cut() -> bytes:
            from PIL import Image

            from vidsearch.models.embed import crop_box
            from vidsearch.media.bundle import read_frame
            from vidsearch.records import Box

            o, f = cat.objects, cat.frames
            with self.engine.connect() as conn:
                row = conn.execute(
                    sa.select(o.c.x0, o.c.y0, o.c.x1, o.c.y1, f.c.bundle_uri, f.c.frame_index)
                    .join(
                        f,
                        sa.and_(
                            f.c.collection == o.c.collection,
                            f.c.video_id == o.c.video_id,
                            f.c.segment_index == o.c.segment_index,
                            f.c.frame_index == o.c.frame_index,
                        ),
                    )
                    .where(o.c.collection == collection, o.c.object_id == oid)
                ).first()
            if row is None:
                raise NotFoundError(f"no object {oid!r} in collection {collection!r}")
            frame = np.asarray(read_frame(row.bundle_uri, row.frame_index).convert("RGB"))
            # The same pixels the embedder saw (integer-rounded, clipped, at least 1x1).
            pixels = crop_box(frame, Box(x0=row.x0, y0=row.y0, x1=row.x1, y1=row.y1))
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="JPEG", quality=90)
            return buf.getvalue()

        return self.crops.get_or_compute((collection, oid), cut)

    # -- vectors ---------------------------------------------------------------------------
    def _vectors(self, collection: str, object_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors by object id (ids missing from the index are left out)."""
        from weaviate.classes.query import Filter

        coll = self._wv(collection)
        out: dict[str, np.ndarray] = {}
        for chunk in _chunks(list(object_ids), 1000):
            res = _retrying(
                lambda chunk=chunk: coll.query.fetch_objects(
                    filters=Filter.by_id().contains_any(list(chunk)),
                    limit=len(chunk),
                    include_vector=True,
                    return_properties=[],
                ),
                f"fetching vectors in {collection}",
            )
            for obj in res.objects:
                out[str(obj.uuid)] = _vector_of(obj)
        return out

    def _near(
        self,
        collection: str,
        vector: Sequence[float],
        limit: int,
        min_similarity: float,
        filters: Any,
    ) -> list[tuple[str, float]]:
        """(object id, cosine similarity) of the nearest objects, best first, similarity >= min."""
        from weaviate.classes.query import MetadataQuery

        coll = self._wv(collection)
        res = _retrying(
            lambda: coll.query.near_vector(
                near_vector=[float(x) for x in vector],
                limit=min(limit, MAX_QUERY_RESULTS),
                distance=min(2.0, 1.0 - min_similarity + 1e-6),
                filters=filters,
                return_metadata=MetadataQuery(distance=True),
                return_properties=[],
            ),
            f"searching {collection}",
        )
        hits = []
        for obj in res.objects:
            similarity = 1.0 - float(obj.metadata.distance)
            if similarity >= min_similarity:
                hits.append((str(obj.uuid), similarity))
        return hits

    def _label_ids(self, conn: sa.Connection, collection: str, name: str, polarity: str,
                   source: Optional[str] = None) -> list[str]:
        lb = cat.labels
        query = sa.select(lb.c.object_id).where(
            lb.c.collection == collection, lb.c.name == name, lb.c.polarity == polarity
        )
        if source is not None:
            query = query.where(lb.c.source == source)
        return [str(r[0]) for r in conn.execute(query.order_by(lb.c.object_id)).all()]

    def _search(
        self,
        collection: str,
        vector: Sequence[float],
        *,
        k: int,
        min_similarity: float,
        video_id: Optional[str],
        detector_label: Optional[str],
        label: Optional[str],
        exclude: set[str],
    ) -> list[dict[str, Any]]:
        """Objects nearest to `vector` (Object + similarity), best first, after every filter."""
        from weaviate.classes.query import Filter

        if not 1 <= k <= MAX_K:
            raise InputError(f"k must be between 1 and {MAX_K}, got {k}")
        _check_range("min_similarity", min_similarity, -1.0, 1.0)
        if label is not None:
            validate_label_name(label)
        clauses = []
        if video_id:
            clauses.append(Filter.by_property("video_id").equal(video_id))
        if detector_label:
            clauses.append(Filter.by_property("label").equal(detector_label))
        allowed: Optional[set[str]] = None
        if label is not None:
            with self.engine.connect() as conn:
                allowed = set(self._label_ids(conn, collection, label, POSITIVE))
            allowed -= exclude
            if not allowed:
                return []
            if len(allowed) <= MAX_ID_FILTER:
                clauses.append(Filter.by_id().contains_any(sorted(allowed)))
        post_exclude = set(exclude)
        if exclude and len(exclude) <= MAX_ID_FILTER:
            clauses.append(Filter.by_id().contains_none(sorted(exclude)))
            post_exclude = set()
        filters = Filter.all_of(clauses) if len(clauses) > 1 else (clauses[0] if clauses else None)

        # Over-fetch: what the post-filters may remove, then double until k survive or nothing is left.
        fetch = k + len(post_exclude)
        if allowed is not None and len(allowed) > MAX_ID_FILTER:
            fetch = max(fetch, 4 * k)
        while True:
            hits = self._near(collection, vector, fetch, min_similarity, filters)
            kept = [
                (oid, sim)
                for oid, sim in hits
                if oid not in exclude and (allowed is None or oid in allowed)
            ]
            if len(kept) >= k or len(hits) < min(fetch, MAX_QUERY_RESULTS) or fetch >= MAX_QUERY_RESULTS:
                break
            fetch = min(fetch * 2, MAX_QUERY_RESULTS)
        kept = kept[:k]
        objs = self.objects_by_id(collection, [oid for oid, _ in kept])
        results = []
        for oid, sim in kept:
            obj = objs.get(oid)
            if obj is not None:  # in Weaviate but not (yet) in Postgres: mid-ingest, skip it
                results.append({**obj, "similarity": sim})
        return results

    def similar(
        self,
        collection: str,
        object_id: str,
        *,
        k: int = 20,
        min_similarity: float = 0.0,
        video_id: Optional[str] = None,
        detector_label: Optional[str] = None,
        label: Optional[str] = None,
    ) -> dict[str, Any]:
        """The query object's nearest neighbours by its stored vector.

        Excluded: the query object itself, and objects labeled negative for any label the query
        object carries positively.
        """
        self.require_collection(collection)
        query = self.get_object(collection, object_id)
        vectors = self._vectors(collection, [query["object_id"]])
        if query["object_id"] not in vectors:
            raise NotFoundError(f"object {query['object_id']!r} has no vector in the index")
        positive = [lb["name"] for lb in query["labels"] if lb["polarity"] == POSITIVE]
        exclude = {query["object_id"]}
        if positive:
            lb = cat.labels
            with self.engine.connect() as conn:
                exclude |= {
                    str(r[0])
                    for r in conn.execute(
                        sa.select(lb.c.object_id).distinct().where(
                            lb.c.collection == collection,
                            lb.c.polarity == NEGATIVE,
                            lb.c.name.in_(positive),
                        )
                    ).all()
                }
        results = self._search(
            collection,
            vectors[query["object_id"]],
            k=k,
            min_similarity=min_similarity,
            video_id=video_id,
            detector_label=detector_label,
            label=label,
            exclude=exclude,
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

    def text_search(
        self,
        collection: str,
        q: str,
        *,
        k: int = 20,
        min_similarity: float = 0.0,
        video_id: Optional[str] = None,
        detector_label: Optional[str] = None,
        label: Optional[str] = None,
    ) -> dict[str, Any]:
        if not isinstance(q, str) or not 1 <= len(q) <= MAX_TEXT:
            raise InputError(f"q must be 1-{MAX_TEXT} characters")
        if not q.strip():
            raise InputError("q must not be blank")
        if not 1 <= k <= MAX_K:
            raise InputError(f"k must be between 1 and {MAX_K}, got {k}")
        _check_range("min_similarity", min_similarity, -1.0, 1.0)
        _, loaded = self.embedder_for(collection)
        if not loaded.embedder.supports_text:
            raise InputError(f"the embedder of collection {collection!r} has no text tower")
        with loaded.lock:
            vector = loaded.embedder.embed_texts([q])[0]
        results = self._search(
            collection,
            vector,
            k=k,
            min_similarity=min_similarity,
            video_id=video_id,
            detector_label=detector_label,
            label=label,
            exclude=set(),
        )
        return {"query": q, "results": results}

    # -- labels ----------------------------------------------------------------------------
    def label_counts(self, collection: str) -> list[dict[str, Any]]:
        """Per name: human positive, human negative and propagated (effective) label counts."""
        self.require_collection(collection)
        lb = cat.labels

        def n(cond: Any) -> Any:
            return sa.func.count().filter(cond)

        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    lb.c.name,
                    n(sa.and_(lb.c.source == HUMAN, lb.c.polarity == POSITIVE)).label("positive"),
                    n(sa.and_(lb.c.source == HUMAN, lb.c.polarity == NEGATIVE)).label("negative"),
                    n(lb.c.source == PROPAGATED).label("propagated"),
                )
                .where(lb.c.collection == collection)
                .group_by(lb.c.name)
                .order_by(lb.c.name)
            ).all()
        return [dict(r._mapping) for r in rows]

    def _check_objects(self, conn: sa.Connection, collection: str, ids: list[str]) -> None:
        o = cat.objects
        found: set[str] = set()
        for chunk in _chunks(ids, 5000):
            found |= {
                str(r[0])
                for r in conn.execute(
                    sa.select(o.c.object_id).where(o.c.collection == collection, o.c.object_id.in_(list(chunk)))
                ).all()
            }
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFoundError(
                f"{len(missing)} unknown object id(s) in collection {collection!r}, e.g. {missing[0]!r}"
            )

    @staticmethod
    def _ids(object_ids: Sequence[Any]) -> list[str]:
        if not 1 <= len(object_ids) <= MAX_LABEL_IDS:
            raise InputError(f"object_ids must hold 1-{MAX_LABEL_IDS} ids, got {len(object_ids)}")
        return list(dict.fromkeys(_uuid(i) for i in object_ids))

    def add_labels(
        self, collection: str, object_ids: Sequence[str], name: str, polarity: str, actor: str
    ) -> int:
        """Set a human label on objects (replacing a propagated one of the same name)."""
        self.require_collection(collection)
        validate_label_name(name)
        if polarity not in cat.LABEL_POLARITIES:
            raise InputError(f"polarity must be 'positive' or 'negative', got {polarity!r}")
        ids = self._ids(object_ids)
        lb = cat.labels
        now = cat._now()
        rows = [
            dict(collection=collection, object_id=i, name=name, polarity=polarity, source=HUMAN,
                 propagation_id=None, score=None, created_by=actor, updated_at=now)
            for i in ids
        ]
        with cat._transient_db_errors(), self.engine.begin() as conn:
            self._check_objects(conn, collection, ids)
            stmt = pg.insert(lb).values(rows)
            stmt = stmt.on_conflict_do_update(
                index_elements=["collection", "object_id", "name"],
                set_={c: stmt.excluded[c] for c in
                      ("polarity", "source", "propagation_id", "score", "created_by", "updated_at")},
            ).returning(lb.c.object_id)
            updated = len(conn.execute(stmt).all())
            conn.execute(
                sa.insert(cat.label_events),
                [dict(collection=collection, object_id=i, name=name, action="add", polarity=polarity,
                      source=HUMAN, propagation_id=None, actor=actor, at=now) for i in ids],
            )
        return updated

    def remove_labels(self, collection: str, object_ids: Sequence[str], name: str, actor: str) -> int:
        """Remove human labels `name` from objects; propagated labels are left alone."""
        self.require_collection(collection)
        validate_label_name(name)
        ids = self._ids(object_ids)
        lb = cat.labels
        now = cat._now()
        with cat._transient_db_errors(), self.engine.begin() as conn:
            self._check_objects(conn, collection, ids)
            removed = conn.execute(
                sa.delete(lb)
                .where(lb.c.collection == collection, lb.c.name == name, lb.c.source == HUMAN,
                       lb.c.object_id.in_(ids))
                .returning(lb.c.object_id, lb.c.polarity)
            ).all()
            if removed:
                conn.execute(
                    sa.insert(cat.label_events),
                    [dict(collection=collection, object_id=str(r.object_id), name=name, action="remove",
                          polarity=r.polarity, source=HUMAN, propagation_id=None, actor=actor, at=now)
                     for r in removed],
                )
        return len(removed)

    def events(self, collection: str, name: str, limit: int = 100) -> list[dict[str, Any]]:
        """The audit trail of one label name, newest first."""
        self.require_collection(collection)
        validate_label_name(name)
        if not 1 <= limit <= 1000:
            raise InputError(f"limit must be between 1 and 1000, got {limit}")
        ev = cat.label_events
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(ev)
                .where(ev.c.collection == collection, ev.c.name == name)
                .order_by(ev.c.id.desc())
                .limit(limit)
            ).all()
        return [_event_dict(r) for r in rows]

    # -- propagation -----------------------------------------------------------------------
    def _candidates(
        self, collection: str, name: str, threshold: float, limit: int
    ) -> tuple[list[str], list[str], list[tuple[str, float]]]:
        """(sources, negatives, [(object id, score)] best first) for propagating `name`."""
        _check_range("threshold", threshold, 0.0, 1.0)
        if not 1 <= limit <= MAX_PROPAGATION_LIMIT:
            raise InputError(f"limit must be between 1 and {MAX_PROPAGATION_LIMIT}, got {limit}")
        validate_label_name(name)
        with self.engine.connect() as conn:
            sources = self._label_ids(conn, collection, name, POSITIVE, HUMAN)
            negatives = self._label_ids(conn, collection, name, NEGATIVE, HUMAN)
        if not sources:
            raise InputError(f"no object is labeled positive with {name!r} by a person: nothing to propagate")
        human = set(sources) | set(negatives)
        vectors = self._vectors(collection, sources + negatives)
        # Best similarity to a source, over a near-vector search around each source. A candidate below
        # the threshold there cannot reach it after the negative term, so the search stops at it.
        best_pos: dict[str, float] = {}
        # Without negatives the score is the source similarity, so each source's `limit` nearest
        # (besides the human-labeled) hold the best `limit` candidates. The negative term re-ranks them,
        # so then each source looks further (exact while its neighbourhood is within that reach).
        reach = limit if not negatives else 4 * limit + 100
        per_source = min(reach + len(human), MAX_QUERY_RESULTS)
        for source in sources:
            if source not in vectors:
                continue
            for oid, sim in self._near(collection, vectors[source], per_source, threshold, None):
                if oid not in human and sim > best_pos.get(oid, -2.0):
                    best_pos[oid] = sim
        if not best_pos:
            return sources, negatives, []
        ids = sorted(best_pos)
        scores = np.array([best_pos[i] for i in ids], dtype=np.float64)
        neg_vectors = [vectors[n] for n in negatives if n in vectors]
        if neg_vectors:
            cand = self._vectors(collection, ids)
            keep = [j for j, i in enumerate(ids) if i in cand]
            ids = [ids[j] for j in keep]
            scores = scores[keep]
            if ids:
                matrix = _normalised(np.stack([cand[i] for i in ids]))
                negs = _normalised(np.stack(neg_vectors))
                best_neg = (matrix @ negs.T).max(axis=1)
                scores = scores - np.maximum(best_neg, 0.0)
        ranked = sorted(
            ((i, float(s)) for i, s in zip(ids, scores) if s >= threshold), key=lambda t: (-t[1], t[0])
        )
        return sources, negatives, ranked[:limit]

    def propagation_preview(self, collection: str, name: str, threshold: float, limit: int = 1000) -> dict[str, Any]:
        self.require_collection(collection)
        _, _, ranked = self._candidates(collection, name, threshold, limit)
        return {"count": len(ranked), "candidates": [{"object_id": i, "score": s} for i, s in ranked]}

    def propagate(self, collection: str, name: str, threshold: float, limit: int, actor: str) -> dict[str, Any]:
        """Store the preview's candidates as propagated positive labels, with provenance."""
        row = self.require_collection(collection)
        sources, negatives, ranked = self._candidates(collection, name, threshold, limit)
        pid = str(uuid.uuid4())
        now = cat._now()
        lb, pr = cat.labels, cat.propagations
        with cat._transient_db_errors(), self.engine.begin() as conn:
            present: set[str] = set()
            o = cat.objects
            for chunk in _chunks([i for i, _ in ranked], 5000):
                present |= {
                    str(r[0])
                    for r in conn.execute(
                        sa.select(o.c.object_id).where(o.c.collection == collection, o.c.object_id.in_(list(chunk)))
                    ).all()
                }
            conn.execute(
                sa.insert(pr).values(
                    id=pid, collection=collection, name=name, sources=sources, negatives=negatives,
                    model=row["embedder_model"], threshold=threshold, count=0, created_by=actor,
                    created_at=now, undone_at=None,
                )
            )
            stored = 0
            rows = [
                dict(collection=collection, object_id=i, name=name, polarity=POSITIVE, source=PROPAGATED,
                     propagation_id=pid, score=s, created_by=actor, updated_at=now)
                for i, s in ranked
                if i in present
            ]
            for chunk in _chunks(rows, 2000):
                stmt = pg.insert(lb).values(list(chunk))
                # A human label is never overwritten; an earlier propagation's label is taken over.
                stmt = stmt.on_conflict_do_update(
                    index_elements=["collection", "object_id", "name"],
                    set_={c: stmt.excluded[c] for c in
                          ("polarity", "source", "propagation_id", "score", "created_by", "updated_at")},
                    where=lb.c.source == PROPAGATED,
                ).returning(lb.c.object_id)
                stored += len(conn.execute(stmt).all())
            conn.execute(sa.update(pr).where(pr.c.id == pid).values(count=stored))
            conn.execute(
                sa.insert(cat.label_events).values(
                    collection=collection, object_id=None, name=name, action="propagate", polarity=POSITIVE,
                    source=PROPAGATED, propagation_id=pid, actor=actor, at=now,
                )
            )
        return {"propagation_id": pid, "count": stored}

    def propagations(self, collection: str, name: str) -> list[dict[str, Any]]:
        self.require_collection(collection)
        validate_label_name(name)
        pr = cat.propagations
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(pr)
                .where(pr.c.collection == collection, pr.c.name == name)
                .order_by(pr.c.created_at.desc(), pr.c.id)
            ).all()
        return [_propagation_dict(r) for r in rows]

    def get_propagation(self, collection: str, propagation_id: str) -> dict[str, Any]:
        self.require_collection(collection)
        pid = _uuid(propagation_id, "propagation id")
        pr = cat.propagations
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(pr).where(pr.c.collection == collection, pr.c.id == pid)).first()
        if row is None:
            raise NotFoundError(f"no propagation {pid!r} in collection {collection!r}")
        return _propagation_dict(row)

    def undo_propagation(self, collection: str, propagation_id: str, actor: str) -> int:
        """Remove the labels this propagation stored (and still owns). Undoing twice removes nothing."""
        self.require_collection(collection)
        pid = _uuid(propagation_id, "propagation id")
        lb, pr = cat.labels, cat.propagations
        now = cat._now()
        with cat._transient_db_errors(), self.engine.begin() as conn:
            row = conn.execute(
                sa.select(pr).where(pr.c.collection == collection, pr.c.id == pid).with_for_update()
            ).first()
            if row is None:
                raise NotFoundError(f"no propagation {pid!r} in collection {collection!r}")
            if row.undone_at is not None:
                return 0
            removed = conn.execute(
                sa.delete(lb)
                .where(lb.c.collection == collection, lb.c.propagation_id == pid, lb.c.source == PROPAGATED)
                .returning(lb.c.object_id)
            ).all()
            conn.execute(sa.update(pr).where(pr.c.id == pid).values(undone_at=now))
            conn.execute(
                sa.insert(cat.label_events).values(
                    collection=collection, object_id=None, name=row.name, action="undo", polarity=POSITIVE,
                    source=PROPAGATED, propagation_id=pid, actor=actor, at=now,
                )
            )
        return len(removed)


def _vector_of(obj: Any) -> np.ndarray:
    vector = obj.vector
    if isinstance(vector, dict):
        vector = vector.get("default", next(iter(vector.values()), None))
    if vector is None:
        raise NotFoundError(f"object {obj.uuid} has no vector")
    return np.asarray(vector, dtype=np.float32)


def _normalised(matrix: np.ndarray) -> np.ndarray:
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
