"""A batch remembers which API made it (OpenAI's Batches or Anthropic's Message Batches).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "batches", sa.Column("api", sa.String(16), nullable=False, server_default="openai")
    )


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("api")
