"""The ledger summed by day, project, model, tier, pool and engine up to a watermark, and
an index on the charged requests after it (docs/decisions/0015).

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_KEYS = (("project", 128), ("day", 10), ("model", 128), ("tier", 32), ("pool", 64), ("engine", 64))
_SUMS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "compute_us",
    "cost_nano",
    "realtime_nano",
)


def upgrade() -> None:
    op.create_table(
        "ledger_rollup",
        *(sa.Column(name, sa.String(size), primary_key=True) for name, size in _KEYS),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in _SUMS),
    )
    op.create_index(
        "ix_requests_charged",
        "requests",
        ["finished_at"],
        sqlite_where=sa.text("cost_nano IS NOT NULL"),
        postgresql_where=sa.text("cost_nano IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_requests_charged", table_name="requests")
    op.drop_table("ledger_rollup")
