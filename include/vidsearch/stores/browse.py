"""Browsing the catalog: collections, videos, frames and objects (with their labels), as plain dicts.

The read side the search API serves, next to `vidsearch.stores.catalog` (which the pipeline writes
through): counts per collection and video, a page of a video's frames with their objects, objects by
id, and where a frame or an object's crop is stored. Lookups of one thing return None when it is not
there; the caller decides what that means (the search service answers `NotFoundError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from vidsearch.stores.catalog import (
    USABLE_SEGMENT_STATES,
    SegmentState,
    chunks,
    collections,
    frames,
    objects,
    segments,
    videos,
)
from vidsearch.stores.labels import attach_labels


class CatalogBrowser:
    """Read-only queries over one catalog database. Each method reads on one connection."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

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
                attach_labels(conn, collection, by_id)
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
                    sa.select(o).where(o.c.collection == collection, o.c.object_id.in_(list(chunk)))
                ).all():
                    d = _object_dict(r)
                    out[d["object_id"]] = d
            attach_labels(conn, collection, out)
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
