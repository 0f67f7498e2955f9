"""Schedules of dataset jobs (an interval or a cron expression); a job's estimated size,
for the planner.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

from slackwater.store.schema import UtcDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_schedules",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("keep", sa.Text, nullable=False),
        sa.Column("output", sa.String(32), nullable=False),
        sa.Column("chunk_rows", sa.Integer, nullable=False),
        sa.Column("every_seconds", sa.Float),
        sa.Column("cron", sa.String(128)),
        sa.Column("next_run_at", UtcDateTime, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_prediction_schedules_due", "prediction_schedules", ["next_run_at"])
    op.create_index("ix_prediction_schedules_project", "prediction_schedules", ["project", "id"])
    op.create_index("ix_prediction_jobs_schedule", "prediction_jobs", ["schedule_id", "id"])
    with op.batch_alter_table("prediction_jobs") as table:
        table.add_column(sa.Column("estimated_rows", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("prediction_jobs") as table:
        table.drop_column("estimated_rows")
    op.drop_index("ix_prediction_jobs_schedule", "prediction_jobs")
    op.drop_index("ix_prediction_schedules_project", "prediction_schedules")
    op.drop_index("ix_prediction_schedules_due", "prediction_schedules")
    op.drop_table("prediction_schedules")
