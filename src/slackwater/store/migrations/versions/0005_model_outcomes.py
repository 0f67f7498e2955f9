"""How often each model's answers passed their checks, per task: online quality.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_outcomes",
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("task", sa.String(128), primary_key=True),
        sa.Column("passed", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("model_outcomes")
