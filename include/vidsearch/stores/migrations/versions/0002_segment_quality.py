"""Segments keep the failed quality expectations that quarantined them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("segments", sa.Column("quality", pg.JSONB))
    op.add_column("ingest_runs", sa.Column("quality_report", sa.Text))


def downgrade() -> None:
    op.drop_column("ingest_runs", "quality_report")
    op.drop_column("segments", "quality")
