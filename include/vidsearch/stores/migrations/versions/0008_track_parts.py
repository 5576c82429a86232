"""Track parts: each segment's part of a track -> the track it was stitched into.

Weaviate keeps each object's part id (its segment-local track's index-time id): rewriting its objects
at finalize cost ~0.8 ms each. Search by track maps the parts of its hits through this table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "track_parts",
        sa.Column("collection", sa.Text, primary_key=True),
        sa.Column("part_id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("video_id", sa.Text, nullable=False),
        sa.Column("track_id", pg.UUID(as_uuid=False), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection", "video_id"], ["videos.collection", "videos.video_id"], ondelete="CASCADE"
        ),
        sa.Index("ix_track_parts_video", "collection", "video_id"),
    )


def downgrade() -> None:
    op.drop_table("track_parts")
