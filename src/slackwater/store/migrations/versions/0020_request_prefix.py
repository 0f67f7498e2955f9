"""Requests name their prompt's leading part, so that a worker can lease those sharing it
together (prefix-aware packing).

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

WHERE = "status = 'pending' AND prefix IS NOT NULL"


def upgrade() -> None:
    op.add_column("requests", sa.Column("prefix", sa.String(16)))
    op.create_index(
        "ix_requests_prefix",
        "requests",
        ["model", "prefix", "urgency", "fair_rank", "id"],
        sqlite_where=sa.text(WHERE),
        postgresql_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_requests_prefix", "requests")
    with op.batch_alter_table("requests") as table:
        table.drop_column("prefix")
