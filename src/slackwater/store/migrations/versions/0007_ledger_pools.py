"""The ledger (per request pool, tokens, compute time, cost and realtime cost; batch
totals) and the workers seen in each pool.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from slackwater.store.schema import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

REQUEST_COLUMNS = (
    ("pool", sa.String(64)),
    ("prompt_tokens", sa.BigInteger()),
    ("completion_tokens", sa.BigInteger()),
    ("compute_us", sa.BigInteger()),
    ("cost_nano", sa.BigInteger()),
    ("realtime_nano", sa.BigInteger()),
)


def upgrade() -> None:
    for name, kind in REQUEST_COLUMNS:
        op.add_column("requests", sa.Column(name, kind))
    for name in ("cost_nano", "realtime_nano"):
        op.add_column(
            "batches", sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
        )

    op.create_table(
        "workers",
        sa.Column("owner", sa.String(120), primary_key=True),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("seen_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("workers")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("realtime_nano")
        batch.drop_column("cost_nano")
    with op.batch_alter_table("requests") as batch:
        for name, _ in reversed(REQUEST_COLUMNS):
            batch.drop_column(name)
