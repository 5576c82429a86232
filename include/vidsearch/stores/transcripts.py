"""Transcripts in the catalog: the chunks Whisper heard, each segment's audio state, and the reads the
transcript search and the combined query ("said X while Y is visible") need.

The tables (`transcript_chunks`, `segment_audio`, migration 0010) are declared with the rest of the
schema in `vidsearch.stores.catalog`; this module owns every query on them. A segment's transcript is
written whole (`replace_segment`: upsert its chunks, drop the ones a re-run no longer produced, mark
its audio done with the count, in one transaction), so re-runs leave the same rows behind. The audio
state is the audio branch's own: `segments.state` (the video branch's) is never read or changed here.

Full text: `websearch_to_tsquery('simple', q)` against the generated `to_tsvector('simple', text)` (no
stemming, no stop words: transcripts come in any language), ranked by `ts_rank`. Arguments are
validated by the caller (`vidsearch.search.SearchService`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from vidsearch.errors import InputError
from vidsearch.records import TranscriptChunk
from vidsearch.stores.catalog import (
    _in_segment,
    frames,
    labels,
    objects,
    segment_audio,
    transcript_chunks,
    transient_db_errors,
    utc_now,
)
from vidsearch.stores.catalog import chunks as slices
from vidsearch.stores.labels import POSITIVE

AudioStatus = Literal["pending", "done", "skipped", "quarantined", "failed"]
AUDIO_STATUSES: tuple[AudioStatus, ...] = get_args(AudioStatus)
# The statuses whose chunks (from an earlier run) are dropped when a segment is marked so: no speech
# (skipped) and damaged audio (quarantined) leave the segment without a transcript.
DROPS_CHUNKS = frozenset({"skipped", "quarantined"})

_CHUNK_COLUMNS = (
    "chunk_id",
    "video_id",
    "segment_index",
    "start_s",
    "end_s",
    "text",
    "language",
    "avg_logprob",
    "no_speech_prob",
)
_ROWS_PER_STATEMENT = 2000


def _tsquery(q: str) -> Any:
    return sa.func.websearch_to_tsquery(sa.literal_column("'simple'", type_=pg.REGCONFIG), q)


def _chunk_dict(row: Any, **extra: Any) -> dict[str, Any]:
    out = {c: row._mapping[c] for c in _CHUNK_COLUMNS}
    out["chunk_id"] = str(out["chunk_id"])
    return {**out, **extra}


def _chunk_select(*extra: Any) -> Any:
    tc = transcript_chunks
    return sa.select(*[tc.c[c] for c in _CHUNK_COLUMNS], *extra)


class TranscriptStore:
    """The transcripts of one catalog database. Every method is one transaction (or one read)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    # -- writes ----------------------------------------------------------------------------
    def replace_segment(
        self,
        collection: str,
        video_id: str,
        segment_index: int,
        chunks: Sequence[TranscriptChunk],
        *,
        model: str,
        language: str | None,
        language_probability: float | None,
    ) -> int:
        """Make the catalog hold exactly `chunks` for this segment and mark its audio done with their
        count, in one transaction: upsert them (keyed on chunk id), delete the segment's other
        chunks. Re-running it with the same chunks changes no counts. Returns the chunk count."""
        for c in chunks:
            if c.video_id != video_id or c.segment_index != segment_index:
                raise InputError(
                    f"chunk {c.chunk_id} belongs to {c.video_id}/{c.segment_index}, not {video_id}/{segment_index}"
                )
        ids = [c.chunk_id for c in chunks]
        if len(set(ids)) != len(ids):
            raise InputError(f"the chunks of {video_id}/{segment_index} repeat a chunk id")
        now = utc_now()
        rows = [
            {"collection": collection, **{k: getattr(c, k) for k in _CHUNK_COLUMNS}, "updated_at": now} for c in chunks
        ]
        tc = transcript_chunks
        in_segment = _in_segment(tc, collection, video_id, segment_index)
        with transient_db_errors(), self.engine.begin() as conn:
            for part in slices(rows, _ROWS_PER_STATEMENT):
                insert = pg.insert(tc).values(list(part))
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=["collection", "chunk_id"],
                        set_={c: insert.excluded[c] for c in (*_CHUNK_COLUMNS[1:], "updated_at")},
                    )
                )
            stale = sa.delete(tc).where(in_segment)
            if ids:
                stale = stale.where(tc.c.chunk_id.notin_(ids))
            conn.execute(stale)
            self._set_audio(
                conn,
                collection,
                video_id,
                segment_index,
                status="done",
                language=language,
                language_probability=language_probability,
                chunk_count=len(rows),
                model=model,
                error=None,
                failed_expectations=None,
                updated_at=now,
            )
        return len(rows)

    def mark_audio(
        self,
        collection: str,
        video_id: str,
        segment_index: int,
        status: AudioStatus,
        *,
        error: str | None = None,
        failed_expectations: list[dict[str, Any]] | None = None,
        model: str | None = None,
    ) -> None:
        """Set a segment's audio state other than done (done is `replace_segment`'s, with the chunks).
        Skipped (no speech) and quarantined (damaged audio) drop the segment's chunks in the same
        transaction; pending and failed keep whatever an earlier run wrote (and its count)."""
        if status not in AUDIO_STATUSES:
            raise InputError(f"audio status must be one of {', '.join(AUDIO_STATUSES)}, got {status!r}")
        if status == "done":
            raise InputError("a segment's audio is marked done by replace_segment, with its chunks")
        tc = transcript_chunks
        with transient_db_errors(), self.engine.begin() as conn:
            in_segment = _in_segment(tc, collection, video_id, segment_index)
            if status in DROPS_CHUNKS:
                conn.execute(sa.delete(tc).where(in_segment))
            count = conn.execute(sa.select(sa.func.count()).select_from(tc).where(in_segment)).scalar_one()
            self._set_audio(
                conn,
                collection,
                video_id,
                segment_index,
                status=status,
                chunk_count=count,
                model=model,
                error=error,
                failed_expectations=failed_expectations,
                updated_at=utc_now(),
            )

    @staticmethod
    def _set_audio(conn: sa.Connection, collection: str, video_id: str, segment_index: int, **values: Any) -> None:
        key = {"collection": collection, "video_id": video_id, "segment_index": segment_index}
        insert = pg.insert(segment_audio).values({**key, **values})
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=list(key), set_={name: insert.excluded[name] for name in values}
            )
        )

    def delete_video(self, collection: str, video_id: str) -> None:
        """Remove the video's chunks and audio states."""
        with transient_db_errors(), self.engine.begin() as conn:
            for table in (transcript_chunks, segment_audio):
                conn.execute(sa.delete(table).where(table.c.collection == collection, table.c.video_id == video_id))

    # -- reads -----------------------------------------------------------------------------
    def audio_status(self, collection: str, video_id: str) -> list[dict[str, Any]]:
        """Each segment's audio state (the `segment_audio` rows), by segment."""
        sa_ = segment_audio
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(sa_)
                .where(sa_.c.collection == collection, sa_.c.video_id == video_id)
                .order_by(sa_.c.segment_index)
            ).all()
        return [dict(r._mapping) for r in rows]

    def video_transcript(
        self, collection: str, video_id: str, from_s: float | None = None, to_s: float | None = None
    ) -> list[dict[str, Any]]:
        """The video's chunks in time order; with `from_s` / `to_s`, those overlapping that range."""
        tc = transcript_chunks
        query = _chunk_select().where(tc.c.collection == collection, tc.c.video_id == video_id)
        if from_s is not None:
            query = query.where(tc.c.end_s >= from_s)
        if to_s is not None:
            query = query.where(tc.c.start_s <= to_s)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(tc.c.start_s, tc.c.chunk_id)).all()
        return [_chunk_dict(r) for r in rows]

    def chunks_by_id(self, collection: str, chunk_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{chunk id: chunk} for the ids the catalog holds."""
        tc = transcript_chunks
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for part in slices(list(chunk_ids), 5000):
                rows = conn.execute(
                    _chunk_select().where(tc.c.collection == collection, tc.c.chunk_id.in_(list(part)))
                ).all()
                out.update({str(r.chunk_id): _chunk_dict(r) for r in rows})
        return out

    def fulltext(self, collection: str, q: str, *, video_id: str | None = None, limit: int) -> list[dict[str, Any]]:
        """The chunks matching `q` (web-search syntax: words, "quoted phrases", or, -not), best
        `ts_rank` first (then time), at most `limit`; each chunk with its `score` (the rank)."""
        tc = transcript_chunks
        query = _tsquery(q)
        rank = sa.func.ts_rank(tc.c.text_tsv, query).label("score")
        stmt = _chunk_select(rank).where(tc.c.collection == collection, tc.c.text_tsv.bool_op("@@")(query))
        if video_id is not None:
            stmt = stmt.where(tc.c.video_id == video_id)
        stmt = stmt.order_by(rank.desc(), tc.c.video_id, tc.c.start_s, tc.c.chunk_id).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [_chunk_dict(r, score=float(r.score)) for r in rows]

    def chunk_ids(self, collection: str, video_id: str) -> list[str]:
        """Every chunk id the catalog holds for the video, sorted (the consistency check's side)."""
        tc = transcript_chunks
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(tc.c.chunk_id).where(tc.c.collection == collection, tc.c.video_id == video_id)
            ).all()
        return sorted(str(r[0]) for r in rows)

    def nearest_frames(self, collection: str, moments: Sequence[tuple[str, int, float]]) -> list[dict[str, Any] | None]:
        """For each (video id, segment index, time): the sampled frame nearest that time among the
        frames of that segment and its neighbours (a non-blank one first), as {segment_index,
        frame_index, pts_s}; None where there is none. One query for all of them."""
        if not moments:
            return []
        wanted = sa.values(
            sa.column("i", sa.Integer),
            sa.column("video_id", sa.Text),
            sa.column("segment_index", sa.Integer),
            sa.column("t", sa.Float),
            name="wanted",
        ).data([(i, v, s, float(t)) for i, (v, s, t) in enumerate(moments)])
        f = frames
        nearest = (
            sa.select(f.c.segment_index, f.c.frame_index, f.c.pts_s)
            .where(
                f.c.collection == collection,
                f.c.video_id == wanted.c.video_id,
                f.c.segment_index.between(wanted.c.segment_index - 1, wanted.c.segment_index + 1),
            )
            .order_by(f.c.blank, sa.func.abs(f.c.pts_s - wanted.c.t), f.c.segment_index, f.c.frame_index)
            .limit(1)
            .lateral("nearest")
        )
        stmt = sa.select(wanted.c.i, nearest).select_from(wanted.outerjoin(nearest, sa.true()))
        out: list[dict[str, Any] | None] = [None] * len(moments)
        with self.engine.connect() as conn:
            for r in conn.execute(stmt).all():
                if r.frame_index is not None:
                    out[r.i] = {"segment_index": r.segment_index, "frame_index": r.frame_index, "pts_s": r.pts_s}
        return out

    # -- what is visible when (the combined query's reads) -----------------------------------
    def sightings(
        self,
        collection: str,
        video_ids: Sequence[str],
        *,
        detector_label: str | None = None,
        label: str | None = None,
    ) -> list[dict[str, Any]]:
        """The detections in `video_ids` with detector label `detector_label` or carrying the label
        `label` positively (from any source), in time order: object_id, video_id, track_id, label
        (the detector's), pts_s."""
        if not video_ids or (detector_label is None and label is None):
            return []
        o = objects
        which = []
        if detector_label is not None:
            which.append(o.c.label == detector_label)
        if label is not None:
            which.append(
                sa.exists().where(
                    labels.c.collection == o.c.collection,
                    labels.c.object_id == o.c.object_id,
                    labels.c.name == label,
                    labels.c.polarity == POSITIVE,
                )
            )
        out: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            for part in slices(sorted(set(video_ids)), 1000):
                rows = conn.execute(
                    sa.select(o.c.object_id, o.c.video_id, o.c.track_id, o.c.label, o.c.pts_s)
                    .where(o.c.collection == collection, o.c.video_id.in_(list(part)), sa.or_(*which))
                    .order_by(o.c.video_id, o.c.pts_s, o.c.object_id)
                ).all()
                out.extend(
                    {
                        "object_id": str(r.object_id),
                        "video_id": r.video_id,
                        "track_id": str(r.track_id) if r.track_id else None,
                        "label": r.label,
                        "pts_s": r.pts_s,
                    }
                    for r in rows
                )
        return out

    def sampling_intervals(self, collection: str, video_ids: Sequence[str]) -> dict[str, float]:
        """{video id: the median time between consecutive sampled frames of a segment} for the videos
        that have at least two frames in a segment."""
        if not video_ids:
            return {}
        f = frames
        gap = (
            f.c.pts_s
            - sa.func.lag(f.c.pts_s).over(partition_by=(f.c.video_id, f.c.segment_index), order_by=f.c.frame_index)
        ).label("gap")
        out: dict[str, float] = {}
        with self.engine.connect() as conn:
            for part in slices(sorted(set(video_ids)), 1000):
                gaps = (
                    sa.select(f.c.video_id, gap)
                    .where(f.c.collection == collection, f.c.video_id.in_(list(part)))
                    .subquery()
                )
                rows = conn.execute(
                    sa.select(gaps.c.video_id, sa.func.percentile_cont(0.5).within_group(gaps.c.gap))
                    .where(gaps.c.gap > 0)
                    .group_by(gaps.c.video_id)
                ).all()
                out.update({r[0]: float(r[1]) for r in rows})
        return out
