"""Content-aware sampling: frames carry their content properties, segments their skipped-frame counts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Frames indexed before this revision were all detected: not blank, no repeat, no scene marks.
    op.add_column("frames", sa.Column("blank", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("frames", sa.Column("duplicate_of", sa.Integer))
    op.add_column("frames", sa.Column("scene_start", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("segments", sa.Column("frames_skipped", pg.JSONB))


def downgrade() -> None:
    op.drop_column("segments", "frames_skipped")
    op.drop_column("frames", "scene_start")
    op.drop_column("frames", "duplicate_of")
    op.drop_column("frames", "blank")
