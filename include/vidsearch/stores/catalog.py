"""The Postgres catalog: collections, ingest runs, videos, segments, frames and objects.

Every table of the catalog database is declared once here (SQLAlchemy Core) and created by Alembic
migrations under `vidsearch/stores/migrations/`. `Catalog` holds the pipeline's and the channels'
queries; `vidsearch.stores.browse` the search API's reads, and `vidsearch.stores.labels` every query on
the label tables. Every write is an upsert keyed on deterministic ids, so a re-run of any stage
leaves the same rows behind. Keys include the collection: one video may be ingested into several
collections, each with its own embedding space.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from vidsearch.errors import InputError, TransientError
from vidsearch.records import DetectedObject, FrameBundle, Segment, VideoManifest

metadata = sa.MetaData()
T = TypeVar("T")


class SegmentState(str, enum.Enum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    QUARANTINED = "quarantined"
    # A reviewer's decisions on a quarantined segment (`segment_reviews`): accepted counts as done,
    # dropped is left out of the video for good (nothing of it is indexed).
    ACCEPTED = "accepted"
    DROPPED = "dropped"


# The segment states whose objects are part of the video (searchable).
USABLE_SEGMENT_STATES = frozenset({SegmentState.DONE.value, SegmentState.ACCEPTED.value})


class RunState(str, enum.Enum):
    """An ingest run's outcome; a video carries the outcome of its last run (`VideoState`)."""

    RUNNING = "running"
    DONE = "done"  # every segment done (or accepted by a reviewer)
    PARTIAL = "partial"  # some segments usable, the others failed, quarantined, dropped or not run
    FAILED = "failed"  # nothing usable: probe or split failed, no segment usable, or the stores disagree


class VideoState(str, enum.Enum):
    INGESTING = "ingesting"  # a run is working on it
    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"


def outcome_state(segment_states: Iterable[str]) -> RunState:
    """The run (and video) state the segments' states add up to: done when every one is usable,
    partial when some are, failed when none is (or there are none)."""
    found = list(segment_states)
    usable = sum(1 for s in found if s in USABLE_SEGMENT_STATES)
    if found and usable == len(found):
        return RunState.DONE
    return RunState.PARTIAL if usable else RunState.FAILED


def utc_now() -> dt.datetime:
    """The current time, timezone-aware (UTC): what every timestamp column of the catalog stores."""
    return dt.datetime.now(dt.UTC)


_ts = functools.partial(sa.Column, type_=sa.DateTime(timezone=True), nullable=False, default=utc_now)

collections = sa.Table(
    "collections",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("embedder_model", sa.Text, nullable=False),
    sa.Column("embedding_dim", sa.Integer, nullable=False),
    sa.Column("weaviate_collection", sa.Text, nullable=False),
    _ts("created_at"),
)

ingest_runs = sa.Table(
    "ingest_runs",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("dag_id", sa.Text, nullable=False),
    sa.Column("collection", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("video_id", sa.Text, nullable=True),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("params", pg.JSONB, nullable=False),
    sa.Column("summary", pg.JSONB, nullable=True),
    sa.Column("quality_report", sa.Text, nullable=True),  # URI of the run's quality report folder
    _ts("started_at"),
    _ts("updated_at"),
)

videos = sa.Table(
    "videos",
    metadata,
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("video_id", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("content_sha256", sa.Text, nullable=False),
    sa.Column("source_uri", sa.Text, nullable=False),
    sa.Column("manifest", pg.JSONB, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("last_run_id", sa.Text, nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    # Channel discovery looks videos up by content hash (migration 0001).
    sa.Index("ix_videos_sha256", "content_sha256"),
)

segments = sa.Table(
    "segments",
    metadata,
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("video_id", sa.Text, primary_key=True),
    sa.Column("segment_index", sa.Integer, primary_key=True),
    sa.Column("start_s", sa.Float, nullable=False),
    sa.Column("end_s", sa.Float, nullable=False),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("frame_count", sa.Integer, nullable=True),
    sa.Column("object_count", sa.Integer, nullable=True),
    sa.Column("bundle_uri", sa.Text, nullable=True),
    sa.Column("quality", pg.JSONB, nullable=True),  # failed expectations of a quarantined segment
    # Frames detection skipped, by reason: {"blank": n, "duplicate": m} (migration 0005).
    sa.Column("frames_skipped", pg.JSONB, nullable=True),
    _ts("updated_at"),
    sa.ForeignKeyConstraint(["collection", "video_id"], ["videos.collection", "videos.video_id"], ondelete="CASCADE"),
)

frames = sa.Table(
    "frames",
    metadata,
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("video_id", sa.Text, primary_key=True),
    sa.Column("segment_index", sa.Integer, primary_key=True),
    sa.Column("frame_index", sa.Integer, primary_key=True),
    sa.Column("pts_s", sa.Float, nullable=False),
    sa.Column("bundle_uri", sa.Text, nullable=False),
    sa.Column("member", sa.Text, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    # Content properties (`FrameRef`, migration 0005): a blank frame or a repeat (duplicate_of: the
    # frame_index, in the same segment, of the frame it repeats) was not sent to detection.
    sa.Column("blank", sa.Boolean, nullable=False, default=False),
    sa.Column("duplicate_of", sa.Integer, nullable=True),
    sa.Column("scene_start", sa.Boolean, nullable=False, default=False),
    sa.ForeignKeyConstraint(
        ["collection", "video_id", "segment_index"],
        ["segments.collection", "segments.video_id", "segments.segment_index"],
        ondelete="CASCADE",
    ),
)

objects = sa.Table(
    "objects",
    metadata,
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("object_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("video_id", sa.Text, nullable=False),
    sa.Column("segment_index", sa.Integer, nullable=False),
    sa.Column("frame_index", sa.Integer, nullable=False),
    sa.Column("pts_s", sa.Float, nullable=False),
    sa.Column("x0", sa.Float, nullable=False),
    sa.Column("y0", sa.Float, nullable=False),
    sa.Column("x1", sa.Float, nullable=False),
    sa.Column("y1", sa.Float, nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("label_id", sa.Integer, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("detector_model", sa.Text, nullable=False),
    sa.Column("embedder_model", sa.Text, nullable=False),
    sa.Column("track_id", pg.UUID(as_uuid=False), nullable=True),  # migration 0007
    sa.ForeignKeyConstraint(
        ["collection", "video_id", "segment_index", "frame_index"],
        ["frames.collection", "frames.video_id", "frames.segment_index", "frames.frame_index"],
        ondelete="CASCADE",
    ),
    sa.Index("ix_objects_segment", "collection", "video_id", "segment_index"),
    sa.Index("ix_objects_track", "collection", "track_id"),
)

# One row per track of a video (migration 0007), derived from its member objects at finalize.
tracks = sa.Table(
    "tracks",
    metadata,
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("track_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("video_id", sa.Text, nullable=False),
    sa.Column("start_pts_s", sa.Float, nullable=False),
    sa.Column("end_pts_s", sa.Float, nullable=False),
    sa.Column("first_object_id", pg.UUID(as_uuid=False), nullable=False),
    sa.Column("object_count", sa.Integer, nullable=False),
    sa.Column("segments", pg.ARRAY(sa.Integer), nullable=False),
    sa.Column("label_votes", pg.JSONB, nullable=False),  # {detector label: member count}
    sa.Column("label", sa.Text, nullable=False),  # the most voted detector label
    _ts("updated_at"),
    sa.ForeignKeyConstraint(["collection", "video_id"], ["videos.collection", "videos.video_id"], ondelete="CASCADE"),
    sa.Index("ix_tracks_video", "collection", "video_id", "start_pts_s"),
)

# Each segment's part of a track -> its stitched track (migration 0008). Weaviate's `track_id` is the
# part's id (what index time gave it): rewriting thousands of objects there at finalize cost ~0.8 ms
# each, so search maps part ids to tracks here instead.
track_parts = sa.Table(
    "track_parts",
    metadata,
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("part_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("video_id", sa.Text, nullable=False),
    sa.Column("track_id", pg.UUID(as_uuid=False), nullable=False),
    sa.ForeignKeyConstraint(["collection", "video_id"], ["videos.collection", "videos.video_id"], ondelete="CASCADE"),
    sa.Index("ix_track_parts_video", "collection", "video_id"),
)

# -- labels (search and labeling; migration 0003; queried by `vidsearch.stores.labels`) -----------------

# One row per (object, label name): a human label replaces a propagated one of the same name, and
# propagation never overwrites a human row (its upsert only updates rows whose source is 'propagated').
labels = sa.Table(
    "labels",
    metadata,
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("object_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("polarity", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("propagation_id", pg.UUID(as_uuid=False), nullable=True),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("created_by", sa.Text, nullable=False),
    _ts("updated_at"),
    sa.ForeignKeyConstraint(
        ["collection", "object_id"], ["objects.collection", "objects.object_id"], ondelete="CASCADE"
    ),
    sa.Index("ix_labels_name", "collection", "name"),
    sa.Index("ix_labels_propagation", "propagation_id"),
)

# One row per propagation run: its inputs (sources, negatives), model and threshold are its provenance.
propagations = sa.Table(
    "propagations",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("collection", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("sources", pg.JSONB, nullable=False),
    sa.Column("negatives", pg.JSONB, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    _ts("created_at"),
    sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
    # What it spread between: single objects, or whole tracks (migration 0009).
    sa.Column("unit", sa.Text, nullable=False, server_default="object"),
    sa.CheckConstraint("unit IN ('object', 'track')", name="ck_propagations_unit"),
    sa.Index("ix_propagations_name", "collection", "name"),
)

# The audit trail: append-only; object_id is NULL for whole-propagation events (propagate, undo).
label_events = sa.Table(
    "label_events",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("collection", sa.Text, nullable=False),
    sa.Column("object_id", pg.UUID(as_uuid=False), nullable=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("polarity", sa.Text, nullable=True),
    sa.Column("source", sa.Text, nullable=True),
    sa.Column("propagation_id", pg.UUID(as_uuid=False), nullable=True),
    sa.Column("actor", sa.Text, nullable=False),
    _ts("at"),
    sa.Index("ix_label_events_name", "collection", "name", "id"),
)

# -- channels (recurring sources; migration 0004) ------------------------------------------------------

# One row per item a channel discovered and handed to video_ingest. `item_key` is the video id (first 32
# hex digits of the content's SHA-256) when the content was hashed at discovery (folders, S3), else
# "u" + 32 hex digits of the SHA-256 of the canonical URL (feeds). The video_ingest run id is derived
# from (channel, item_key), so a re-run of discovery can never trigger the same video twice.
channel_items = sa.Table(
    "channel_items",
    metadata,
    sa.Column("channel", sa.Text, primary_key=True),
    sa.Column("item_key", sa.Text, primary_key=True),
    sa.Column("collection", sa.Text, nullable=False),
    sa.Column("canonical_url", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # what video_ingest was given
    sa.Column("content_sha256", sa.Text, nullable=True),
    sa.Column("video_id", sa.Text, nullable=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=True),
    sa.Column("item_time", sa.DateTime(timezone=True), nullable=True),  # mtime / published / updated
    sa.Column("run_id", sa.Text, nullable=False),  # the triggered video_ingest run
    sa.Column("conf", pg.JSONB, nullable=False),
    sa.Column("discovery_run_id", sa.Text, nullable=False),  # the channel_ingest run that found it
    sa.Column("interval_start", sa.DateTime(timezone=True), nullable=True),
    sa.Column("interval_end", sa.DateTime(timezone=True), nullable=True),
    _ts("discovered_at"),
    sa.Index("ix_channel_items_url", "channel", "canonical_url"),
    sa.Index("ix_channel_items_sha256", "collection", "content_sha256"),
    sa.Index("ix_channel_items_run", "run_id"),
)

# -- reviews of quarantined segments (migration 0006) ----------------------------------------------------

# One row per review task of a video_ingest run: the segment, what the reviewer saw (the failed
# expectations and the quality report), what was chosen, by whom and when, and what was done about it.
# `decided_by` is NULL when nobody answered and the timeout default was applied (`timed_out`).
segment_reviews = sa.Table(
    "segment_reviews",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("video_id", sa.Text, primary_key=True),
    sa.Column("segment_index", sa.Integer, primary_key=True),
    sa.Column("dag_id", sa.Text, nullable=False),
    sa.Column("task_id", sa.Text, nullable=False),
    sa.Column("map_index", sa.Integer, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("decided_by", sa.Text, nullable=True),
    sa.Column("decided_by_id", sa.Text, nullable=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("timed_out", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text, nullable=True),  # the segment's error when it was reviewed
    sa.Column("quality", pg.JSONB, nullable=True),  # its failed expectations when it was reviewed
    sa.Column("quality_report", sa.Text, nullable=True),
    sa.Column("outcome", sa.Text, nullable=False),  # what acting on the decision did
    sa.Index("ix_segment_reviews_segment", "collection", "video_id", "segment_index"),
)

# -- transcripts (the audio branch; migration 0010; queried by `vidsearch.stores.transcripts`) ---------

_SEGMENT_FK = (
    ["collection", "video_id", "segment_index"],
    ["segments.collection", "segments.video_id", "segments.segment_index"],
)

# One row per timestamped phrase of a segment's transcript (`records.TranscriptChunk`), keyed on its
# deterministic chunk id; times are seconds from the video start. `text_tsv` is generated by Postgres
# (`to_tsvector('simple', text)`: no stemming, no stop words, any language) for full-text search.
transcript_chunks = sa.Table(
    "transcript_chunks",
    metadata,
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("chunk_id", pg.UUID(as_uuid=False), primary_key=True),
    sa.Column("video_id", sa.Text, nullable=False),
    sa.Column("segment_index", sa.Integer, nullable=False),
    sa.Column("start_s", sa.Float, nullable=False),
    sa.Column("end_s", sa.Float, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("language", sa.Text, nullable=True),
    sa.Column("avg_logprob", sa.Float, nullable=True),
    sa.Column("no_speech_prob", sa.Float, nullable=True),
    sa.Column("text_tsv", pg.TSVECTOR, sa.Computed("to_tsvector('simple', text)", persisted=True)),
    _ts("updated_at"),
    sa.ForeignKeyConstraint(*_SEGMENT_FK, ondelete="CASCADE"),
    sa.Index("ix_transcript_chunks_video", "collection", "video_id", "start_s"),
    sa.Index("ix_transcript_chunks_segment", "collection", "video_id", "segment_index"),
    sa.Index("ix_transcript_chunks_tsv", "text_tsv", postgresql_using="gin"),
)

# Each segment's audio state, apart from its video state (`segments.state`): damaged audio never
# changes whether the segment's frames and objects are part of the video.
segment_audio = sa.Table(
    "segment_audio",
    metadata,
    sa.Column("collection", sa.Text, primary_key=True),
    sa.Column("video_id", sa.Text, primary_key=True),
    sa.Column("segment_index", sa.Integer, primary_key=True),
    sa.Column("status", sa.Text, nullable=False),  # pending, done, skipped, quarantined, failed
    sa.Column("language", sa.Text, nullable=True),
    sa.Column("language_probability", sa.Float, nullable=True),
    sa.Column("chunk_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("model", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("failed_expectations", pg.JSONB, nullable=True),
    _ts("updated_at"),
    sa.ForeignKeyConstraint(*_SEGMENT_FK, ondelete="CASCADE"),
    sa.CheckConstraint(
        "status IN ('pending', 'done', 'skipped', 'quarantined', 'failed')", name="ck_segment_audio_status"
    ),
)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x76696473  # "vids": advisory lock id serialising concurrent migrations


def sqlalchemy_url(url: str) -> str:
    """Normalise `postgres://` / `postgresql://` URLs to the psycopg2 driver SQLAlchemy needs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


@functools.lru_cache(maxsize=8)
def engine_for(url: str) -> sa.Engine:
    """One pooled engine per URL per process."""
    return sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True, future=True)


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest Alembic revision of the catalog schema (read from the migration scripts once)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration scripts in {MIGRATIONS_DIR}")
    return head


def schema_is_current(engine: sa.Engine) -> bool:
    """True when the database's schema is at `head_revision()` (one cheap query, no Alembic run)."""
    with transient_db_errors(), engine.connect() as conn:
        try:
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except sa.exc.ProgrammingError:  # no alembic_version table: never migrated
            return False
    return version == head_revision()


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision; safe when several processes race.

    A schema already at head costs one query (every task process calls this once)."""
    from alembic import command

    if schema_is_current(engine):
        return
    cfg = _alembic_config()
    with transient_db_errors(), engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextlib.contextmanager
def transient_db_errors() -> Iterator[None]:
    """Turn connection-level database failures into TransientError (worth a retry).

    Wraps every write transaction of the catalog's stores: `with transient_db_errors(), engine.begin():`.
    """
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        if getattr(exc, "connection_invalidated", True):
            raise TransientError(f"catalog database unavailable: {exc.orig}") from exc
        raise


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    """`items` in consecutive slices of at most `size` (bounds the parameters of one IN (...) query)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def existing_object_ids(conn: sa.Connection, collection: str, object_ids: Sequence[str]) -> set[str]:
    """Which of `object_ids` the collection holds, read on `conn` (inside the caller's transaction)."""
    found: set[str] = set()
    for chunk in chunks(object_ids, 5000):
        found |= {
            str(r[0])
            for r in conn.execute(
                sa.select(objects.c.object_id).where(
                    objects.c.collection == collection, objects.c.object_id.in_(list(chunk))
                )
            ).all()
        }
    return found


def _in_segment(table: sa.Table, collection: str, video_id: str, segment_index: int) -> Any:
    """The rows of `table` belonging to one segment of one video."""
    return sa.and_(
        table.c.collection == collection,
        table.c.video_id == video_id,
        table.c.segment_index == segment_index,
    )


def _upsert(table: sa.Table, rows: Sequence[dict[str, Any]], keys: Iterable[str]) -> Any:
    stmt = pg.insert(table).values(list(rows))
    key_set = set(keys)
    update = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key_set}
    update.pop("created_at", None)
    return stmt.on_conflict_do_update(index_elements=list(key_set), set_=update)


def winning_label(votes: Mapping[str, int]) -> str:
    """A track's detector label: the most voted; ties go to the alphabetically first, so re-runs agree."""
    return min(votes, key=lambda name: (-votes[name], name))


class Catalog:
    """Reads and writes the catalog. Every method is one transaction."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> Catalog:
        return cls(engine_for(url))

    # -- runs ------------------------------------------------------------------------------
    def start_run(self, run_id: str, dag_id: str, collection: str, source: str, params: dict) -> None:
        row = dict(
            run_id=run_id,
            dag_id=dag_id,
            collection=collection,
            source=source,
            state=RunState.RUNNING.value,
            error=None,
            params=params,
            started_at=utc_now(),
            updated_at=utc_now(),
        )
        with transient_db_errors(), self.engine.begin() as conn:
            stmt = pg.insert(ingest_runs).values(row)
            # A retried or cleared run keeps its start time but is running again.
            stmt = stmt.on_conflict_do_update(
                index_elements=["run_id"],
                set_={"state": stmt.excluded.state, "error": None, "updated_at": utc_now()},
            )
            conn.execute(stmt)

    def end_run(
        self,
        run_id: str,
        state: RunState,
        *,
        error: str | None = None,
        video_id: str | None = None,
        summary: dict | None = None,
        quality_report: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state.value, "error": error, "updated_at": utc_now()}
        if video_id is not None:
            values["video_id"] = video_id
        if quality_report is not None:
            values["quality_report"] = quality_report
        if summary is not None:
            values["summary"] = summary
        with transient_db_errors(), self.engine.begin() as conn:
            conn.execute(sa.update(ingest_runs).where(ingest_runs.c.run_id == run_id).values(values))

    def running_runs(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Runs still `running` (run id, DAG id, start), oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(ingest_runs.c.run_id, ingest_runs.c.dag_id, ingest_runs.c.started_at)
                .where(ingest_runs.c.state == RunState.RUNNING.value)
                .order_by(ingest_runs.c.started_at)
                .limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(ingest_runs).where(ingest_runs.c.run_id == run_id)).first()
        return dict(row._mapping) if row else None

    # -- collections -----------------------------------------------------------------------
    def register_collection(self, name: str, embedder_model: str, embedding_dim: int, weaviate_collection: str) -> None:
        """Pin a collection to one embedding space; a different embedder later is an input error."""
        with transient_db_errors(), self.engine.begin() as conn:
            conn.execute(
                pg.insert(collections)
                .values(
                    name=name,
                    embedder_model=embedder_model,
                    embedding_dim=embedding_dim,
                    weaviate_collection=weaviate_collection,
                )
                .on_conflict_do_nothing(index_elements=["name"])
            )
            row = conn.execute(sa.select(collections).where(collections.c.name == name)).one()
        if row.embedder_model != embedder_model or row.embedding_dim != embedding_dim:
            raise InputError(
                f"collection {name!r} holds embeddings of {row.embedder_model!r} "
                f"({row.embedding_dim}-d); cannot add {embedder_model!r} ({embedding_dim}-d): "
                "use another collection"
            )

    def get_collection(self, name: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(collections).where(collections.c.name == name)).first()
        return dict(row._mapping) if row else None

    # -- videos and segments ---------------------------------------------------------------
    def upsert_video(self, collection: str, manifest: VideoManifest, source_uri: str, run_id: str) -> None:
        row = dict(
            collection=collection,
            video_id=manifest.video_id,
            source=manifest.source,
            content_sha256=manifest.content_sha256,
            source_uri=source_uri,
            manifest=manifest.model_dump(mode="json"),
            state=VideoState.INGESTING.value,
            last_run_id=run_id,
            created_at=utc_now(),
            updated_at=utc_now(),
        )
        with transient_db_errors(), self.engine.begin() as conn:
            conn.execute(_upsert(videos, [row], ["collection", "video_id"]))

    def set_video_state(self, collection: str, video_id: str, state: str) -> None:
        with transient_db_errors(), self.engine.begin() as conn:
            conn.execute(
                sa.update(videos)
                .where(videos.c.collection == collection, videos.c.video_id == video_id)
                .values(state=state, updated_at=utc_now())
            )

    def upsert_segments(self, collection: str, segs: Sequence[Segment]) -> None:
        """Record the plan. A segment already done keeps its state (re-runs skip no work, but
        a crash between split and index never leaves a done segment marked pending)."""
        if not segs:
            return
        rows = [
            dict(
                collection=collection,
                video_id=s.video_id,
                segment_index=s.index,
                start_s=s.start_s,
                end_s=s.end_s,
                uri=s.uri,
                state=SegmentState.PENDING.value,
                error=None,
                updated_at=utc_now(),
            )
            for s in segs
        ]
        stmt = pg.insert(segments).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["collection", "video_id", "segment_index"],
            set_={
                "start_s": stmt.excluded.start_s,
                "end_s": stmt.excluded.end_s,
                "uri": stmt.excluded.uri,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        with transient_db_errors(), self.engine.begin() as conn:
            conn.execute(stmt)
            # Segments beyond the new plan (e.g. a shorter time limit this time) are not part of the
            # video any more: dropping them cascades to their frames and objects.
            conn.execute(
                sa.delete(segments).where(
                    segments.c.collection == collection,
                    segments.c.video_id == segs[0].video_id,
                    segments.c.segment_index >= len(segs),
                )
            )

    def set_segment_state(
        self,
        collection: str,
        video_id: str,
        segment_index: int,
        state: SegmentState,
        error: str | None = None,
        quality: list[dict[str, Any]] | None = None,
    ) -> None:
        with transient_db_errors(), self.engine.begin() as conn:
            conn.execute(
                sa.update(segments)
                .where(_in_segment(segments, collection, video_id, segment_index))
                .values(state=state.value, error=error, quality=quality, updated_at=utc_now())
            )

    def quarantine_segment(
        self,
        collection: str,
        video_id: str,
        segment_index: int,
        error: str,
        failed_expectations: list[dict[str, Any]] | None,
    ) -> None:
        """Mark a segment quarantined with the failed expectations, dropping whatever an earlier run
        indexed for it (its frames and objects), in one transaction."""
        with transient_db_errors(), self.engine.begin() as conn:
            for table in (objects, frames):
                conn.execute(sa.delete(table).where(_in_segment(table, collection, video_id, segment_index)))
            conn.execute(
                sa.update(segments)
                .where(_in_segment(segments, collection, video_id, segment_index))
                .values(
                    state=SegmentState.QUARANTINED.value,
                    error=error,
                    quality=failed_expectations,
                    frame_count=None,
                    object_count=None,
                    frames_skipped=None,
                    updated_at=utc_now(),
                )
            )

    def write_segment_index(
        self,
        collection: str,
        bundle: FrameBundle,
        objs: Sequence[DetectedObject],
        detector_model: str,
        embedder_model: str,
    ) -> None:
        """Replace one segment's frames and objects and mark it done, in one transaction.

        Rows with the same keys are updated in place; rows of an earlier run that this run did not
        produce are removed, so the segment ends up exactly as this run saw it.
        """
        key = dict(collection=collection, video_id=bundle.video_id, segment_index=bundle.segment_index)
        frame_rows = [
            dict(
                **key,
                frame_index=f.index,
                pts_s=f.pts_s,
                bundle_uri=bundle.uri,
                member=f.member,
                width=bundle.width,
                height=bundle.height,
                blank=f.blank,
                duplicate_of=f.duplicate_of,
                scene_start=f.scene_start,
            )
            for f in bundle.frames
        ]
        object_rows = [
            dict(
                collection=collection,
                object_id=o.object_id,
                video_id=o.video_id,
                segment_index=o.segment_index,
                frame_index=o.frame_index,
                pts_s=o.pts_s,
                x0=o.box.x0,
                y0=o.box.y0,
                x1=o.box.x1,
                y1=o.box.y1,
                label=o.label,
                label_id=o.label_id,
                score=o.score,
                detector_model=detector_model,
                embedder_model=embedder_model,
                track_id=o.track_id,
            )
            for o in objs
        ]
        seg_filter = _in_segment(objects, collection, bundle.video_id, bundle.segment_index)
        with transient_db_errors(), self.engine.begin() as conn:
            conn.execute(sa.delete(objects).where(seg_filter, objects.c.object_id.notin_([o.object_id for o in objs])))
            conn.execute(
                sa.delete(frames).where(
                    _in_segment(frames, collection, bundle.video_id, bundle.segment_index),
                    frames.c.frame_index >= len(bundle.frames),
                )
            )
            if frame_rows:
                conn.execute(_upsert(frames, frame_rows, ["collection", "video_id", "segment_index", "frame_index"]))
            for start in range(0, len(object_rows), 5000):
                conn.execute(_upsert(objects, object_rows[start : start + 5000], ["collection", "object_id"]))
            conn.execute(
                sa.update(segments)
                .where(_in_segment(segments, collection, bundle.video_id, bundle.segment_index))
                .values(
                    state=SegmentState.DONE.value,
                    error=None,
                    quality=None,
                    frame_count=len(frame_rows),
                    object_count=len(object_rows),
                    frames_skipped=bundle.frames_skipped(),
                    bundle_uri=bundle.uri,
                    updated_at=utc_now(),
                )
            )

    # -- reads -----------------------------------------------------------------------------
    def segment_states(self, collection: str, video_id: str) -> dict[int, dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(segments)
                .where(segments.c.collection == collection, segments.c.video_id == video_id)
                .order_by(segments.c.segment_index)
            ).all()
        return {r.segment_index: dict(r._mapping) for r in rows}

    def counts(self, collection: str, video_id: str) -> dict[str, int]:
        """Rows per table for one video."""
        with self.engine.connect() as conn:

            def count(table: sa.Table) -> int:
                return conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(table.c.collection == collection, table.c.video_id == video_id)
                ).scalar_one()

            return {"segments": count(segments), "frames": count(frames), "objects": count(objects)}

    def frames_skipped(self, collection: str, video_id: str) -> dict[str, int]:
        """Frames of one video that detection skipped, by reason: {"blank": n, "duplicate": m}."""
        with self.engine.connect() as conn:
            blank, duplicate = conn.execute(
                sa.select(
                    sa.func.count().filter(frames.c.blank),
                    sa.func.count().filter(sa.not_(frames.c.blank), frames.c.duplicate_of.is_not(None)),
                ).where(frames.c.collection == collection, frames.c.video_id == video_id)
            ).one()
        return {"blank": int(blank), "duplicate": int(duplicate)}

    def object_counts_by_segment(self, collection: str, video_id: str) -> dict[int, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(objects.c.segment_index, sa.func.count())
                .where(objects.c.collection == collection, objects.c.video_id == video_id)
                .group_by(objects.c.segment_index)
            ).all()
        return {int(i): int(n) for i, n in rows}

    def object_ids(self, collection: str, video_id: str, segment_index: int | None = None) -> set[str]:
        query = sa.select(objects.c.object_id).where(objects.c.collection == collection, objects.c.video_id == video_id)
        if segment_index is not None:
            query = query.where(objects.c.segment_index == segment_index)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return {str(r[0]) for r in rows}

    # -- tracks -------------------------------------------------------------------------------
    def track_members(self, collection: str, video_id: str) -> list[dict[str, Any]]:
        """Every object of a video with its track, in time order: object_id, track_id,
        segment_index, frame_index, pts_s, box (x0, y0, x1, y1), label."""
        query = (
            sa.select(
                objects.c.object_id,
                objects.c.track_id,
                objects.c.segment_index,
                objects.c.frame_index,
                objects.c.pts_s,
                objects.c.x0,
                objects.c.y0,
                objects.c.x1,
                objects.c.y1,
                objects.c.label,
            )
            .where(objects.c.collection == collection, objects.c.video_id == video_id)
            .order_by(objects.c.pts_s, objects.c.object_id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "object_id": str(r.object_id),
                "track_id": str(r.track_id) if r.track_id else None,
                "segment_index": r.segment_index,
                "frame_index": r.frame_index,
                "pts_s": r.pts_s,
                "box": (r.x0, r.y0, r.x1, r.y1),
                "label": r.label,
            }
            for r in rows
        ]

    def set_track_ids(self, collection: str, track_ids: Mapping[str, str]) -> None:
        """Point objects at their (stitched) track: {object id: track id}, in one transaction (one
        UPDATE ... FROM VALUES per 5,000 objects, not one statement per object)."""
        items = list(track_ids.items())
        with transient_db_errors(), self.engine.begin() as conn:
            for chunk in chunks(items, 5000):
                moved = sa.values(
                    sa.column("oid", pg.UUID(as_uuid=False)), sa.column("tid", pg.UUID(as_uuid=False)), name="moved"
                ).data(list(chunk))
                conn.execute(
                    sa.update(objects)
                    .where(objects.c.collection == collection, objects.c.object_id == moved.c.oid)
                    .values(track_id=moved.c.tid)
                )

    def rebuild_tracks(self, collection: str, video_id: str) -> int:
        """Replace the video's `tracks` rows with what its objects say (time range, first member,
        member count, segments, detector label votes and the winning label); returns the count."""
        votes = (
            sa.select(objects.c.track_id, objects.c.label, sa.func.count().label("n"))
            .where(objects.c.collection == collection, objects.c.video_id == video_id, objects.c.track_id.isnot(None))
            .group_by(objects.c.track_id, objects.c.label)
            .subquery()
        )
        voted = (
            sa.select(votes.c.track_id, sa.func.jsonb_object_agg(votes.c.label, votes.c.n).label("label_votes"))
            .group_by(votes.c.track_id)
            .subquery()
        )
        members = (
            sa.select(
                objects.c.track_id,
                sa.func.min(objects.c.pts_s).label("start_pts_s"),
                sa.func.max(objects.c.pts_s).label("end_pts_s"),
                sa.func.count().label("object_count"),
                sa.func.array_agg(sa.distinct(objects.c.segment_index)).label("segments"),
                sa.func.array_agg(pg.aggregate_order_by(objects.c.object_id, objects.c.pts_s, objects.c.object_id))[
                    1
                ].label("first_object_id"),
            )
            .where(objects.c.collection == collection, objects.c.video_id == video_id, objects.c.track_id.isnot(None))
            .group_by(objects.c.track_id)
            .subquery()
        )
        with transient_db_errors(), self.engine.begin() as conn:
            conn.execute(sa.delete(tracks).where(tracks.c.collection == collection, tracks.c.video_id == video_id))
            rows = conn.execute(
                sa.select(members, voted.c.label_votes).join(voted, voted.c.track_id == members.c.track_id)
            ).all()
            now = utc_now()
            payload = [
                dict(
                    collection=collection,
                    video_id=video_id,
                    track_id=str(r.track_id),
                    start_pts_s=r.start_pts_s,
                    end_pts_s=r.end_pts_s,
                    first_object_id=str(r.first_object_id),
                    object_count=r.object_count,
                    segments=sorted(r.segments),
                    label_votes=r.label_votes,
                    label=winning_label(r.label_votes),
                    updated_at=now,
                )
                for r in rows
            ]
            for chunk in chunks(payload, 5000):
                conn.execute(sa.insert(tracks), list(chunk))
        return len(payload)

    def replace_track_parts(self, collection: str, video_id: str, parts: Mapping[str, str]) -> None:
        """Record the video's parts: {part id: stitched track id}, replacing what was there."""
        rows = [dict(collection=collection, video_id=video_id, part_id=p, track_id=t) for p, t in parts.items()]
        with transient_db_errors(), self.engine.begin() as conn:
            conn.execute(
                sa.delete(track_parts).where(track_parts.c.collection == collection, track_parts.c.video_id == video_id)
            )
            for chunk in chunks(rows, 5000):
                conn.execute(sa.insert(track_parts), list(chunk))

    def tracks_of_parts(self, collection: str, part_ids: Sequence[str]) -> dict[str, str]:
        """{part id: stitched track id} for the parts finalize recorded (others are their own track)."""
        if not part_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(track_parts.c.part_id, track_parts.c.track_id).where(
                    track_parts.c.collection == collection, track_parts.c.part_id.in_(list(part_ids))
                )
            ).all()
        return {str(r.part_id): str(r.track_id) for r in rows}

    def tracks_by_id(self, collection: str, track_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{track id: its `tracks` row} for the ids that have one."""
        if not track_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(tracks).where(tracks.c.collection == collection, tracks.c.track_id.in_(list(track_ids)))
            ).all()
        return {str(r.track_id): dict(r._mapping) for r in rows}

    def detected_frames(self, collection: str, video_id: str) -> dict[int, list[int]]:
        """{segment: the frame indexes detection ran on (neither blank nor a repeat), in order}: the
        positions the worker's tracker counted its gaps in."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(frames.c.segment_index, frames.c.frame_index)
                .where(
                    frames.c.collection == collection,
                    frames.c.video_id == video_id,
                    frames.c.blank.is_(False),
                    frames.c.duplicate_of.is_(None),
                )
                .order_by(frames.c.segment_index, frames.c.frame_index)
            ).all()
        out: dict[int, list[int]] = {}
        for r in rows:
            out.setdefault(r.segment_index, []).append(r.frame_index)
        return out

    def track_object_ids(self, collection: str, track_ids: Sequence[str]) -> dict[str, list[str]]:
        """{track id: its member object ids, in time order} for those of `track_ids` with members."""
        if not track_ids:
            return {}
        out: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(track_ids, 5000):
                rows = conn.execute(
                    sa.select(objects.c.track_id, objects.c.object_id)
                    .where(objects.c.collection == collection, objects.c.track_id.in_(list(chunk)))
                    .order_by(objects.c.pts_s, objects.c.object_id)
                ).all()
                for r in rows:
                    out.setdefault(str(r.track_id), []).append(str(r.object_id))
        return out

    def tracks_of_objects(self, collection: str, object_ids: Sequence[str]) -> dict[str, str]:
        """{object id: its track id} for those of `object_ids` that are in a track."""
        if not object_ids:
            return {}
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(object_ids, 5000):
                rows = conn.execute(
                    sa.select(objects.c.object_id, objects.c.track_id).where(
                        objects.c.collection == collection,
                        objects.c.object_id.in_(list(chunk)),
                        objects.c.track_id.isnot(None),
                    )
                ).all()
                out.update({str(r.object_id): str(r.track_id) for r in rows})
        return out

    def video_tracks(self, collection: str, video_id: str) -> list[dict[str, Any]]:
        """The video's tracks in time order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(tracks)
                .where(tracks.c.collection == collection, tracks.c.video_id == video_id)
                .order_by(tracks.c.start_pts_s, tracks.c.track_id)
            ).all()
        return [dict(r._mapping) for r in rows]

    # -- reviews ------------------------------------------------------------------------------
    def record_review(self, row: dict[str, Any]) -> None:
        """Upsert one review decision, keyed on (run, collection, video, segment)."""
        with transient_db_errors(), self.engine.begin() as conn:
            conn.execute(_upsert(segment_reviews, [row], ["run_id", "collection", "video_id", "segment_index"]))

    def reviews(self, collection: str, video_id: str) -> list[dict[str, Any]]:
        """Every recorded review of the video's segments, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(segment_reviews)
                .where(segment_reviews.c.collection == collection, segment_reviews.c.video_id == video_id)
                .order_by(segment_reviews.c.decided_at)
            ).all()
        return [dict(r._mapping) for r in rows]

    # -- videos (reads for reprocessing) ------------------------------------------------------
    def get_video(self, collection: str, video_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(videos).where(videos.c.collection == collection, videos.c.video_id == video_id)
            ).first()
        return dict(row._mapping) if row else None

    # -- channels ---------------------------------------------------------------------------
    def channel_items_by_key(self, channel: str, item_keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The channel's recorded items among `item_keys`, by key."""
        keys = sorted(set(item_keys))
        if not keys:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(channel_items).where(channel_items.c.channel == channel, channel_items.c.item_key.in_(keys))
            ).all()
        return {r.item_key: dict(r._mapping) for r in rows}

    def channel_items_by_url(self, channel: str, urls: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """The channel's recorded items at the canonical `urls` (several when the content changed)."""
        wanted = sorted(set(urls))
        if not wanted:
            return {}
        found: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 1000):
                rows = conn.execute(
                    sa.select(channel_items).where(
                        channel_items.c.channel == channel,
                        channel_items.c.canonical_url.in_(wanted[start : start + 1000]),
                    )
                ).all()
                for r in rows:
                    found.setdefault(r.canonical_url, []).append(dict(r._mapping))
        return found

    def known_content(self, collection: str, hashes: Iterable[str]) -> dict[str, str]:
        """Which content hashes the collection already has: ingested videos ("video <id>") or items a
        channel already handed to video_ingest ("channel <name>")."""
        wanted = sorted(set(hashes))
        if not wanted:
            return {}
        known: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 1000):
                chunk = wanted[start : start + 1000]
                for sha, channel in conn.execute(
                    sa.select(channel_items.c.content_sha256, channel_items.c.channel).where(
                        channel_items.c.collection == collection, channel_items.c.content_sha256.in_(chunk)
                    )
                ).all():
                    known.setdefault(sha, f"channel {channel}")
                for sha, video_id in conn.execute(
                    sa.select(videos.c.content_sha256, videos.c.video_id).where(
                        videos.c.collection == collection, videos.c.content_sha256.in_(chunk)
                    )
                ).all():
                    known[sha] = f"video {video_id}"
        return known

    def known_sources(self, collection: str, sources: Iterable[str]) -> set[str]:
        """Which of `sources` (as given to video_ingest) the collection already holds a video of."""
        wanted = sorted(set(sources))
        if not wanted:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(videos.c.source).where(videos.c.collection == collection, videos.c.source.in_(wanted))
            ).all()
        return {r[0] for r in rows}

    def record_channel_items(self, rows: Sequence[dict[str, Any]]) -> None:
        """Upsert discovered items keyed on (channel, item_key); the first discovery time is kept."""
        if not rows:
            return
        stmt = pg.insert(channel_items).values([{"discovered_at": utc_now(), **r} for r in rows])
        keep = {"channel", "item_key", "discovered_at"}
        stmt = stmt.on_conflict_do_update(
            index_elements=["channel", "item_key"],
            set_={c.name: stmt.excluded[c.name] for c in channel_items.columns if c.name not in keep},
        )
        with transient_db_errors(), self.engine.begin() as conn:
            conn.execute(stmt)

    def list_channel_items(self, channel: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(channel_items).order_by(channel_items.c.channel, channel_items.c.discovered_at)
        if channel is not None:
            query = query.where(channel_items.c.channel == channel)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]
