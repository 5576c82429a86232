"""Catalog: collections, ingest runs, videos, segments, frames, objects.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def _ts(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=NOW)


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("embedder_model", sa.Text, nullable=False),
        sa.Column("embedding_dim", sa.Integer, nullable=False),
        sa.Column("weaviate_collection", sa.Text, nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "ingest_runs",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("dag_id", sa.Text, nullable=False),
        sa.Column("collection", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("video_id", sa.Text),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("params", pg.JSONB, nullable=False),
        sa.Column("summary", pg.JSONB),
        _ts("started_at"),
        _ts("updated_at"),
    )
    op.create_table(
        "videos",
        sa.Column("collection", sa.Text, primary_key=True),
        sa.Column("video_id", sa.Text, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("content_sha256", sa.Text, nullable=False),
        sa.Column("source_uri", sa.Text, nullable=False),
        sa.Column("manifest", pg.JSONB, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("last_run_id", sa.Text),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_index("ix_videos_sha256", "videos", ["content_sha256"])
    op.create_table(
        "segments",
        sa.Column("collection", sa.Text, primary_key=True),
        sa.Column("video_id", sa.Text, primary_key=True),
        sa.Column("segment_index", sa.Integer, primary_key=True),
        sa.Column("start_s", sa.Float, nullable=False),
        sa.Column("end_s", sa.Float, nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("frame_count", sa.Integer),
        sa.Column("object_count", sa.Integer),
        sa.Column("bundle_uri", sa.Text),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["collection", "video_id"], ["videos.collection", "videos.video_id"], ondelete="CASCADE"
        ),
        sa.CheckConstraint("state IN ('pending', 'done', 'failed', 'quarantined')", name="ck_segments_state"),
    )
    op.create_table(
        "frames",
        sa.Column("collection", sa.Text, primary_key=True),
        sa.Column("video_id", sa.Text, primary_key=True),
        sa.Column("segment_index", sa.Integer, primary_key=True),
        sa.Column("frame_index", sa.Integer, primary_key=True),
        sa.Column("pts_s", sa.Float, nullable=False),
        sa.Column("bundle_uri", sa.Text, nullable=False),
        sa.Column("member", sa.Text, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.ForeignKeyConstraint(
            ["collection", "video_id", "segment_index"],
            ["segments.collection", "segments.video_id", "segments.segment_index"],
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "objects",
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
        sa.ForeignKeyConstraint(
            ["collection", "video_id", "segment_index", "frame_index"],
            ["frames.collection", "frames.video_id", "frames.segment_index", "frames.frame_index"],
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_objects_segment", "objects", ["collection", "video_id", "segment_index"])


def downgrade() -> None:
    for table in ("objects", "frames", "segments", "videos", "ingest_runs", "collections"):
        op.drop_table(table)
