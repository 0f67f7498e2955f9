"""A secret per installation that turns request row numbers into unguessable request ids.

Revision ID: 0010
Revises: 0009
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    state = sa.table(
        "scheduler_state", sa.column("name", sa.String), sa.column("value", sa.BigInteger)
    )
    op.bulk_insert(state, [{"name": "request_id_key", "value": secrets.randbits(63)}])


def downgrade() -> None:
    op.execute("DELETE FROM scheduler_state WHERE name = 'request_id_key'")
