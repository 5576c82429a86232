"""Tracks: objects followed across the frames of a video.

Adds `objects.track_id` (the track each detection belongs to: the worker's tracker within a segment,
stitched across segment boundaries at finalize), `tracks` (one row per track, derived from its
members: time range, member count, detector label votes).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("objects", sa.Column("track_id", pg.UUID(as_uuid=False), nullable=True))
    op.create_index("ix_objects_track", "objects", ["collection", "track_id"])
    op.create_table(
        "tracks",
        sa.Column("collection", sa.Text, primary_key=True),
        sa.Column("track_id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("video_id", sa.Text, nullable=False),
        sa.Column("start_pts_s", sa.Float, nullable=False),
        sa.Column("end_pts_s", sa.Float, nullable=False),
        sa.Column("first_object_id", pg.UUID(as_uuid=False), nullable=False),
        sa.Column("object_count", sa.Integer, nullable=False),
        sa.Column("segments", pg.ARRAY(sa.Integer), nullable=False),
        sa.Column("label_votes", pg.JSONB, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection", "video_id"], ["videos.collection", "videos.video_id"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_tracks_video", "tracks", ["collection", "video_id", "start_pts_s"])


def downgrade() -> None:
    op.drop_index("ix_tracks_video", table_name="tracks")
    op.drop_table("tracks")
    op.drop_index("ix_objects_track", table_name="objects")
    op.drop_column("objects", "track_id")
