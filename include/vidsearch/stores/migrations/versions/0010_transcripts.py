"""Transcripts: the audio branch's chunks and its own per-segment state.

Adds `transcript_chunks` (one row per timestamped phrase Whisper heard in a segment, keyed on its
deterministic chunk id, with a generated `tsvector` of its text for Postgres full-text search) and
`segment_audio` (each segment's audio state: pending, done, skipped, quarantined or failed, with the
detected language, the chunk count, the model and what went wrong). Audio has a table of its own so
that damaged audio never changes a segment's video state (`segments.state`).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NOW = sa.text("now()")
SEGMENT = (
    ["collection", "video_id", "segment_index"],
    ["segments.collection", "segments.video_id", "segments.segment_index"],
)


def upgrade() -> None:
    op.create_table(
        "transcript_chunks",
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
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.ForeignKeyConstraint(*SEGMENT, ondelete="CASCADE"),
    )
    op.create_index("ix_transcript_chunks_video", "transcript_chunks", ["collection", "video_id", "start_s"])
    op.create_index("ix_transcript_chunks_segment", "transcript_chunks", ["collection", "video_id", "segment_index"])
    op.create_index("ix_transcript_chunks_tsv", "transcript_chunks", ["text_tsv"], postgresql_using="gin")
    op.create_table(
        "segment_audio",
        sa.Column("collection", sa.Text, primary_key=True),
        sa.Column("video_id", sa.Text, primary_key=True),
        sa.Column("segment_index", sa.Integer, primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("language", sa.Text, nullable=True),
        sa.Column("language_probability", sa.Float, nullable=True),
        sa.Column("chunk_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("model", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("failed_expectations", pg.JSONB, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.ForeignKeyConstraint(*SEGMENT, ondelete="CASCADE"),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'skipped', 'quarantined', 'failed')", name="ck_segment_audio_status"
        ),
    )


def downgrade() -> None:
    op.drop_table("segment_audio")
    op.drop_index("ix_transcript_chunks_tsv", table_name="transcript_chunks")
    op.drop_index("ix_transcript_chunks_segment", table_name="transcript_chunks")
    op.drop_index("ix_transcript_chunks_video", table_name="transcript_chunks")
    op.drop_table("transcript_chunks")
