"""Fair-share ordering, retry backoff, idempotent creates, result cache, webhooks.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from slackwater.store.schema import RowId, UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "requests", sa.Column("project", sa.String(128), nullable=False, server_default="default")
    )
    op.add_column(
        "requests", sa.Column("urgency", sa.BigInteger, nullable=False, server_default="0")
    )
    op.add_column(
        "requests", sa.Column("fair_rank", sa.BigInteger, nullable=False, server_default="0")
    )
    op.add_column("requests", sa.Column("not_before", UtcDateTime))
    op.add_column("requests", sa.Column("cache_key", sa.String(64)))
    op.drop_index("ix_requests_runnable", "requests")
    op.create_index(
        "ix_requests_queue", "requests", ["status", "model", "urgency", "fair_rank", "id"]
    )
    op.add_column("batches", sa.Column("idempotency_key", sa.String(255)))
    op.add_column("batches", sa.Column("retried_from", sa.String(40)))
    op.create_index(
        "ix_batches_idempotency", "batches", ["project", "idempotency_key"], unique=True
    )
    op.create_table(
        "projects",
        sa.Column("project", sa.String(128), primary_key=True),
        sa.Column("next_rank", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "scheduler_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "result_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(40), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=False),
        sa.Column("delivered_at", UtcDateTime),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_webhook_due", "webhook_deliveries", ["delivered_at", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("result_cache")
    op.drop_table("scheduler_state")
    op.drop_table("projects")
    op.drop_index("ix_batches_idempotency", "batches")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("retried_from")
        batch.drop_column("idempotency_key")
    op.drop_index("ix_requests_queue", "requests")
    with op.batch_alter_table("requests") as batch:
        for column in ("cache_key", "not_before", "fair_rank", "urgency", "project"):
            batch.drop_column(column)
    op.create_index("ix_requests_runnable", "requests", ["status", "model", "deadline", "id"])
