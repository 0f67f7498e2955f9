"""Dataset jobs of classical models, their recorded chunks, and precomputed predictions
by (model, version, key) with the version readers see.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

from slackwater.store.schema import UtcDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("keep", sa.Text, nullable=False),
        sa.Column("output", sa.String(32), nullable=False),
        sa.Column("chunk_rows", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("schedule_id", sa.String(40)),
        sa.Column("rows_done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("chunks_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total_rows", sa.BigInteger),
        sa.Column("compute_us", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("result", sa.Text),
        sa.Column("owner", sa.String(128)),
        sa.Column("lease_expires_at", UtcDateTime),
        sa.Column("deadline", UtcDateTime, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("started_at", UtcDateTime),
        sa.Column("finished_at", UtcDateTime),
    )
    op.create_index("ix_prediction_jobs_due", "prediction_jobs", ["status", "deadline"])
    op.create_index("ix_prediction_jobs_project", "prediction_jobs", ["project", "id"])
    op.create_table(
        "prediction_chunks",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("compute_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "predictions",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("version", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "prediction_versions",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("computed_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("prediction_versions")
    op.drop_table("predictions")
    op.drop_table("prediction_chunks")
    op.drop_index("ix_prediction_jobs_project", "prediction_jobs")
    op.drop_index("ix_prediction_jobs_due", "prediction_jobs")
    op.drop_table("prediction_jobs")
