"""Intake claims: one process at a time validates a batch, even with several servers.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from slackwater.store.schema import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("intake_owner", sa.String(80)))
    op.add_column("batches", sa.Column("intake_until", UtcDateTime))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("intake_until")
        batch.drop_column("intake_owner")
