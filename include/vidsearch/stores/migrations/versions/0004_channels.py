"""Channels: the items each channel discovered and handed to video_ingest.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "channel_items",
        sa.Column("channel", sa.Text, primary_key=True),
        sa.Column("item_key", sa.Text, primary_key=True),
        sa.Column("collection", sa.Text, nullable=False),
        sa.Column("canonical_url", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("content_sha256", sa.Text),
        sa.Column("video_id", sa.Text),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("item_time", sa.DateTime(timezone=True)),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("conf", pg.JSONB, nullable=False),
        sa.Column("discovery_run_id", sa.Text, nullable=False),
        sa.Column("interval_start", sa.DateTime(timezone=True)),
        sa.Column("interval_end", sa.DateTime(timezone=True)),
        sa.Column("discovered_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("(content_sha256 IS NULL) = (video_id IS NULL)", name="ck_channel_items_hashed"),
    )
    op.create_index("ix_channel_items_url", "channel_items", ["channel", "canonical_url"])
    op.create_index("ix_channel_items_sha256", "channel_items", ["collection", "content_sha256"])
    op.create_index("ix_channel_items_run", "channel_items", ["run_id"])


def downgrade() -> None:
    op.drop_table("channel_items")
