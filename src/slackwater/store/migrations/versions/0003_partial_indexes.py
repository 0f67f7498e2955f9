"""Partial indexes on requests: each holds only the requests in one state.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PARTIAL = {
    "ix_requests_pending": (["model", "urgency", "fair_rank", "id"], "status = 'pending'"),
    "ix_requests_leased": (["lease_expires_at"], "status = 'leased'"),
    "ix_requests_retrying": (["not_before"], "status = 'retrying'"),
    "ix_requests_lease": (["lease_id"], "lease_id IS NOT NULL"),
}


def upgrade() -> None:
    op.drop_index("ix_requests_queue", "requests")
    op.drop_index("ix_requests_lease", "requests")
    for name, (columns, where) in PARTIAL.items():
        op.create_index(
            name, "requests", columns, sqlite_where=sa.text(where), postgresql_where=sa.text(where)
        )


def downgrade() -> None:
    for name in PARTIAL:
        op.drop_index(name, "requests")
    op.create_index("ix_requests_lease", "requests", ["lease_id"])
    op.create_index(
        "ix_requests_queue", "requests", ["status", "model", "urgency", "fair_rank", "id"]
    )
