"""Propagations record what they spread between: single objects, or whole tracks.

`propagations.unit` is `object` (each candidate object scored against the labelled objects, as every
propagation before this revision did) or `track` (tracks scored by their track vectors against the
tracks of the labelled objects; every member of a chosen track is labelled with its track's score).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("propagations", sa.Column("unit", sa.Text, nullable=False, server_default="object"))
    op.create_check_constraint("ck_propagations_unit", "propagations", "unit IN ('object', 'track')")


def downgrade() -> None:
    op.drop_constraint("ck_propagations_unit", "propagations", type_="check")
    op.drop_column("propagations", "unit")
