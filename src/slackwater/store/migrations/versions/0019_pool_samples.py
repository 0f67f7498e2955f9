"""Each pool's price and availability over time, as its feed gave them.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

from slackwater.store.schema import UtcDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pool_samples",
        sa.Column("pool", sa.String(64), primary_key=True),
        sa.Column("at", UtcDateTime, primary_key=True),
        sa.Column("available", sa.Boolean, nullable=False),
        sa.Column("price_per_hour", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pool_samples")
