"""Reviews of quarantined segments; run and video states that say what happened.

Adds `segment_reviews` (one row per review decision: who chose what, when, and what was done) and
renames the outcome states: runs `success` -> `done`; a failed run's video that was left `ingesting`
(the stuck state this revision fixes) becomes `failed`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SEGMENT_STATES = "'pending', 'done', 'failed', 'quarantined', 'accepted', 'dropped'"


def upgrade() -> None:
    op.create_table(
        "segment_reviews",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("collection", sa.Text, primary_key=True),
        sa.Column("video_id", sa.Text, primary_key=True),
        sa.Column("segment_index", sa.Integer, primary_key=True),
        sa.Column("dag_id", sa.Text, nullable=False),
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("map_index", sa.Integer, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("decided_by", sa.Text),
        sa.Column("decided_by_id", sa.Text),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timed_out", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("quality", pg.JSONB),
        sa.Column("quality_report", sa.Text),
        sa.Column("outcome", sa.Text, nullable=False),
    )
    op.create_index("ix_segment_reviews_segment", "segment_reviews", ["collection", "video_id", "segment_index"])
    # 0001 allowed only the first four segment states; reviews add accepted and dropped.
    op.drop_constraint("ck_segments_state", "segments", type_="check")
    op.create_check_constraint("ck_segments_state", "segments", f"state IN ({SEGMENT_STATES})")
    op.execute("UPDATE ingest_runs SET state = 'done' WHERE state = 'success'")
    op.execute(
        "UPDATE videos SET state = 'failed' FROM ingest_runs r "
        "WHERE videos.state = 'ingesting' AND r.run_id = videos.last_run_id AND r.state = 'failed'"
    )


def downgrade() -> None:
    op.execute("UPDATE segments SET state = 'done' WHERE state = 'accepted'")
    op.execute("UPDATE segments SET state = 'quarantined' WHERE state = 'dropped'")
    op.drop_constraint("ck_segments_state", "segments", type_="check")
    op.create_check_constraint("ck_segments_state", "segments", "state IN ('pending', 'done', 'failed', 'quarantined')")
    op.execute("UPDATE ingest_runs SET state = 'success' WHERE state = 'done'")
    op.drop_index("ix_segment_reviews_segment", table_name="segment_reviews")
    op.drop_table("segment_reviews")
