"""The ledger also records each request's engine and the rate it was charged at.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("engine", sa.String(64)))
    op.add_column("requests", sa.Column("price", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("price")
        batch.drop_column("engine")
