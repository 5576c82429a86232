"""Labels on objects, label propagations (with provenance) and the labeling audit trail.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def _ts(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=NOW)


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("collection", sa.Text, primary_key=True),
        sa.Column("object_id", pg.UUID(as_uuid=False), primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("polarity", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("propagation_id", pg.UUID(as_uuid=False)),
        sa.Column("score", sa.Float),
        sa.Column("created_by", sa.Text, nullable=False),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["collection", "object_id"], ["objects.collection", "objects.object_id"], ondelete="CASCADE"
        ),
        sa.CheckConstraint("polarity IN ('positive', 'negative')", name="ck_labels_polarity"),
        sa.CheckConstraint("source IN ('human', 'propagated')", name="ck_labels_source"),
        sa.CheckConstraint("char_length(name) BETWEEN 1 AND 200", name="ck_labels_name"),
        # A propagated label is always positive and always names the propagation that stored it.
        sa.CheckConstraint(
            "source = 'human' OR (polarity = 'positive' AND propagation_id IS NOT NULL)",
            name="ck_labels_propagated",
        ),
    )
    op.create_index("ix_labels_name", "labels", ["collection", "name"])
    op.create_index("ix_labels_propagation", "labels", ["propagation_id"])

    op.create_table(
        "propagations",
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
        sa.Column("undone_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_propagations_name", "propagations", ["collection", "name"])

    op.create_table(
        "label_events",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),  # BIGSERIAL
        sa.Column("collection", sa.Text, nullable=False),
        sa.Column("object_id", pg.UUID(as_uuid=False)),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("polarity", sa.Text),
        sa.Column("source", sa.Text),
        sa.Column("propagation_id", pg.UUID(as_uuid=False)),
        sa.Column("actor", sa.Text, nullable=False),
        _ts("at"),
        sa.CheckConstraint("action IN ('add', 'remove', 'propagate', 'undo')", name="ck_label_events_action"),
    )
    op.create_index("ix_label_events_name", "label_events", ["collection", "name", "id"])


def downgrade() -> None:
    for table in ("label_events", "propagations", "labels"):
        op.drop_table(table)
