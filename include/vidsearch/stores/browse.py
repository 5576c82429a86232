"""Browsing the catalog: collections, videos, frames and objects (with their labels), as plain dicts.

The read side the search API serves, next to `vidsearch.stores.catalog` (which the pipeline writes
through): counts per collection and video, a page of a video's frames with their objects, objects by
id, and where a frame or an object's crop is stored. Lookups of one thing return None when it is not
there; the caller decides what that means (the search service answers `NotFoundError`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from vidsearch.stores.catalog import (
    USABLE_SEGMENT_STATES,
    SegmentState,
    chunks,
    collections,
    frames,
    ingest_runs,
    labels,
    objects,
    segments,
    tracks,
    videos,
)
from vidsearch.stores.labels import HUMAN, POSITIVE, PROPAGATED, labels_column, object_labels


class CatalogBrowser:
    """Read-only queries over one catalog database. Each method reads on one connection."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def video_tracks(self, collection: str, video_id: str) -> list[dict[str, Any]]:
        """The video's tracks in time order (a timeline): id, time range, member count, detector label,
        and the label names its members carry positively (human labels, and propagated ones no human
        label overrides), with how many members carry each."""
        t, o, lb = tracks, objects, labels
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.track_id, t.c.start_pts_s, t.c.end_pts_s, t.c.object_count, t.c.label)
                .where(t.c.collection == collection, t.c.video_id == video_id)
                .order_by(t.c.start_pts_s, t.c.track_id)
            ).all()
            named = conn.execute(
                sa.select(o.c.track_id, lb.c.name, sa.func.count().label("n"))
                .join(lb, sa.and_(lb.c.collection == o.c.collection, lb.c.object_id == o.c.object_id))
                .where(o.c.collection == collection, o.c.video_id == video_id, lb.c.polarity == POSITIVE)
                .group_by(o.c.track_id, lb.c.name)
                .order_by(o.c.track_id, lb.c.name)
            ).all()
        names: dict[str, list[dict[str, Any]]] = {}
        for r in named:
            names.setdefault(str(r.track_id), []).append({"name": r.name, "objects": r.n})
        return [
            {
                "track_id": str(r.track_id),
                "start_pts_s": r.start_pts_s,
                "end_pts_s": r.end_pts_s,
                "object_count": r.object_count,
                "detector_label": r.label,
                "labels": names.get(str(r.track_id), []),
            }
            for r in rows
        ]

    def collections(self) -> list[dict[str, Any]]:
        """Every collection (name, embedder model and dimension) with its video and object counts."""
        c, v, o = collections, videos, objects
        n_videos = sa.select(sa.func.count()).select_from(v).where(v.c.collection == c.c.name).scalar_subquery()
        n_objects = sa.select(sa.func.count()).select_from(o).where(o.c.collection == c.c.name).scalar_subquery()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    c.c.name,
                    c.c.embedder_model,
                    c.c.embedding_dim,
                    n_videos.label("videos"),
                    n_objects.label("objects"),
                ).order_by(c.c.name)
            ).all()
        return [dict(r._mapping) for r in rows]

    def has_video(self, collection: str, video_id: str) -> bool:
        """Whether the collection holds the video (in any state)."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(videos.c.video_id).where(videos.c.collection == collection, videos.c.video_id == video_id)
            ).first()
        return found is not None

    def videos(self, collection: str) -> list[dict[str, Any]]:
        """The collection's videos, oldest first, with their manifest facts and row counts (and the
        staged source's `source_uri` and the whole `manifest`, for the caller to use, not to serve)."""
        v, s, f, o = videos, segments, frames, objects

        def count(table: sa.Table, *where: Any) -> Any:
            return (
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.collection == v.c.collection, table.c.video_id == v.c.video_id, *where)
                .scalar_subquery()
            )

        query = (
            sa.select(
                v,
                count(s).label("n_segments"),
                count(s, s.c.state.in_(sorted(USABLE_SEGMENT_STATES))).label("n_done"),  # done or accepted
                count(s, s.c.state == SegmentState.QUARANTINED.value).label("n_quarantined"),
                count(f).label("n_frames"),
                count(o).label("n_objects"),
            )
            .where(v.c.collection == collection)
            .order_by(v.c.created_at, v.c.video_id)
        )
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
                    "container": manifest.get("container"),
                    "video_codec": manifest.get("video_codec"),
                    "audio_codec": manifest.get("audio_codec"),
                    "source_uri": r.source_uri,  # where the staged source is (callers keep it inside)
                    "manifest": manifest,
                }
            )
        return out

    def frame_page(self, collection: str, video_id: str, offset: int, limit: int) -> dict[str, Any]:
        """`{"total", "frames"}`: the video's frame count and one page of its frames ordered by time,
        each with its objects (best score first) and their labels."""
        f = frames
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
                o = objects
                orows = conn.execute(
                    sa.select(o, labels_column(o))
                    .where(
                        o.c.collection == collection,
                        o.c.video_id == video_id,
                        sa.tuple_(o.c.segment_index, o.c.frame_index).in_(keys),
                    )
                    .order_by(o.c.segment_index, o.c.frame_index, o.c.score.desc(), o.c.object_id)
                ).all()
                for r in orows:
                    objs[(r.segment_index, r.frame_index)].append(_object_dict(r))
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

    def frame(self, collection: str, video_id: str, segment_index: int, frame_index: int) -> dict[str, Any] | None:
        """One frame's row (where it is stored: `bundle_uri`, `member`), or None."""
        f = frames
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(f).where(
                    f.c.collection == collection,
                    f.c.video_id == video_id,
                    f.c.segment_index == segment_index,
                    f.c.frame_index == frame_index,
                )
            ).first()
        return dict(row._mapping) if row is not None else None

    def objects_by_id(self, collection: str, object_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Objects (with their labels) by id; unknown ids are left out."""
        out: dict[str, dict[str, Any]] = {}
        if not object_ids:
            return out
        o = objects
        with self.engine.connect() as conn:
            for chunk in chunks(list(object_ids), 5000):
                for r in conn.execute(
                    sa.select(o, labels_column(o)).where(o.c.collection == collection, o.c.object_id.in_(list(chunk)))
                ).all():
                    d = _object_dict(r)
                    out[d["object_id"]] = d
        return out

    def crop_source(self, collection: str, object_id: str) -> dict[str, Any] | None:
        """An object's box (`x0`, `y0`, `x1`, `y1`) and its frame's `bundle_uri` and `frame_index`, or None."""
        o, f = objects, frames
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
                .where(o.c.collection == collection, o.c.object_id == object_id)
            ).first()
        return dict(row._mapping) if row is not None else None

    def video_objects(self, collection: str, video_id: str) -> list[dict[str, Any]]:
        """Every object row of one video (all columns), in time order (by frame, best score first)."""
        o = objects
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(o)
                .where(o.c.collection == collection, o.c.video_id == video_id)
                .order_by(o.c.pts_s, o.c.segment_index, o.c.frame_index, o.c.score.desc(), o.c.object_id)
            ).all()
        return [dict(r._mapping) for r in rows]

    @contextlib.contextmanager
    def export_snapshot(self, collection: str) -> Iterator[ExportReads]:
        """The reads of an export (`vidsearch.export`), all on one read-only REPEATABLE READ transaction:
        every pass of one export sees the same snapshot of the catalog."""
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield ExportReads(conn, collection)


def included_label(min_propagated_score: float | None) -> Any:
    """The labels an export counts (a condition on `labels`): positive human labels, and positive
    propagated ones scoring at least `min_propagated_score` when it is given. Negatives never count."""
    lb = labels
    cond = sa.and_(lb.c.polarity == POSITIVE, lb.c.source == HUMAN)
    if min_propagated_score is None:
        return cond
    propagated = sa.and_(lb.c.polarity == POSITIVE, lb.c.source == PROPAGATED, lb.c.score >= min_propagated_score)
    return sa.or_(cond, propagated)


class ExportReads:
    """Read-only queries of one export over one collection, on one connection (`export_snapshot`).

    `video_id` and `label` narrow every query (None: the whole collection, every label name);
    `min_propagated_score` is `included_label`'s. Row iterators stream (a server-side cursor)."""

    STREAM = 2000  # rows fetched at a time by the streaming queries

    def __init__(self, conn: sa.Connection, collection: str):
        self.conn = conn
        self.collection = collection

    def has_collection(self) -> bool:
        c = collections
        return self.conn.execute(sa.select(c.c.name).where(c.c.name == self.collection)).first() is not None

    def has_video(self, video_id: str) -> bool:
        v = videos
        found = self.conn.execute(
            sa.select(v.c.video_id).where(v.c.collection == self.collection, v.c.video_id == video_id)
        ).first()
        return found is not None

    def _labelled(self, video_id: str | None, label: str | None, min_propagated_score: float | None) -> list[Any]:
        """The conditions joining `objects` to the labels an export counts."""
        o, lb = objects, labels
        where = [
            o.c.collection == self.collection,
            lb.c.collection == o.c.collection,
            lb.c.object_id == o.c.object_id,
            included_label(min_propagated_score),
        ]
        if video_id is not None:
            where.append(o.c.video_id == video_id)
        if label is not None:
            where.append(lb.c.name == label)
        return where

    def label_names(self, video_id: str | None, label: str | None, min_propagated_score: float | None) -> list[str]:
        """The distinct label names the export's objects carry (as counted), sorted."""
        where = self._labelled(video_id, label, min_propagated_score)
        rows = self.conn.execute(
            sa.select(labels.c.name).distinct().select_from(objects).where(*where).order_by(labels.c.name)
        ).all()
        return [r[0] for r in rows]

    def count_labelled(
        self, video_id: str | None, label: str | None, min_propagated_score: float | None
    ) -> tuple[int, int]:
        """(frames, labels): how many frames hold a counted label, and how many counted labels there are."""
        o = objects
        where = self._labelled(video_id, label, min_propagated_score)
        n_frames, n_labels = self.conn.execute(
            sa.select(
                sa.func.count(sa.distinct(sa.tuple_(o.c.video_id, o.c.segment_index, o.c.frame_index))),
                sa.func.count(),
            )
            .select_from(o)
            .where(*where)
        ).one()
        return int(n_frames), int(n_labels)

    def labelled_frames(
        self, video_id: str | None, label: str | None, min_propagated_score: float | None
    ) -> Iterator[Any]:
        """The frames holding a counted label, by (video, segment, frame): their keys, `pts_s`, size and
        where their JPEG is stored (`bundle_uri`, `member`)."""
        o, f = objects, frames
        keys = (o.c.video_id, o.c.segment_index, o.c.frame_index)
        holding = (
            sa.select(*keys).distinct().select_from(o).where(*self._labelled(video_id, label, min_propagated_score))
        )
        held = holding.subquery()
        query = (
            sa.select(
                f.c.video_id,
                f.c.segment_index,
                f.c.frame_index,
                f.c.pts_s,
                f.c.width,
                f.c.height,
                f.c.bundle_uri,
                f.c.member,
            )
            .join(
                held,
                sa.and_(
                    held.c.video_id == f.c.video_id,
                    held.c.segment_index == f.c.segment_index,
                    held.c.frame_index == f.c.frame_index,
                ),
            )
            .where(f.c.collection == self.collection)
            .order_by(f.c.video_id, f.c.segment_index, f.c.frame_index)
        )
        yield from self.conn.execute(query.execution_options(yield_per=self.STREAM))

    def labelled_objects(
        self, video_id: str | None, label: str | None, min_propagated_score: float | None
    ) -> Iterator[dict[str, Any]]:
        """One row per counted (object, label), by (video, segment, frame, object, name): the object's
        columns plus `label_name`, `label_source` and `label_score`."""
        o, lb = objects, labels
        query = (
            sa.select(
                o,
                lb.c.name.label("label_name"),
                lb.c.source.label("label_source"),
                lb.c.score.label("label_score"),
            )
            .select_from(o)
            .where(*self._labelled(video_id, label, min_propagated_score))
            .order_by(o.c.video_id, o.c.segment_index, o.c.frame_index, o.c.object_id, lb.c.name)
        )
        for row in self.conn.execute(query.execution_options(yield_per=self.STREAM)):
            yield dict(row._mapping)

    def videos(self, video_id: str | None) -> list[dict[str, Any]]:
        """The videos (one, or the collection's), oldest first: `video_id`, `manifest` and the
        `params` of their last ingest run (None when that run is not recorded)."""
        v, r = videos, ingest_runs
        query = (
            sa.select(v.c.video_id, v.c.manifest, r.c.params)
            .select_from(v.outerjoin(r, r.c.run_id == v.c.last_run_id))
            .where(v.c.collection == self.collection)
            .order_by(v.c.created_at, v.c.video_id)
        )
        if video_id is not None:
            query = query.where(v.c.video_id == video_id)
        return [dict(row._mapping) for row in self.conn.execute(query).all()]

    def video_frames(self, video_id: str) -> list[dict[str, Any]]:
        """A video's sampled frames in time order: keys, `pts_s`, `width`, `height`."""
        f = frames
        rows = self.conn.execute(
            sa.select(f.c.segment_index, f.c.frame_index, f.c.pts_s, f.c.width, f.c.height)
            .where(f.c.collection == self.collection, f.c.video_id == video_id)
            .order_by(f.c.pts_s, f.c.segment_index, f.c.frame_index)
        ).all()
        return [dict(r._mapping) for r in rows]

    def count_objects(self, video_id: str | None) -> int:
        o = objects
        query = sa.select(sa.func.count()).select_from(o).where(o.c.collection == self.collection)
        if video_id is not None:
            query = query.where(o.c.video_id == video_id)
        return int(self.conn.execute(query).scalar_one())

    def object_label_names(
        self, video_id: str, label: str | None, min_propagated_score: float | None
    ) -> dict[str, list[str]]:
        """Object id -> the counted label names it carries (sorted), for the video's labelled objects."""
        o, lb = objects, labels
        out: dict[str, list[str]] = {}
        query = (
            sa.select(o.c.object_id, lb.c.name)
            .select_from(o)
            .where(*self._labelled(video_id, label, min_propagated_score))
            .order_by(o.c.object_id, lb.c.name)
        )
        for oid, name in self.conn.execute(query.execution_options(yield_per=self.STREAM)):
            out.setdefault(str(oid), []).append(name)
        return out


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
        "track_id": str(row.track_id) if row.track_id else None,
        "labels": object_labels(row.labels_json),
    }
