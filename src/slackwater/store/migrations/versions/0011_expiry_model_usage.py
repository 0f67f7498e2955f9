"""Files can expire; a batch knows its model, its token usage, and when its output
files expire.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("files", sa.Column("expires_at", sa.DateTime(timezone=True)))
    op.create_index("ix_files_expires_at", "files", ["expires_at"])
    op.add_column("batches", sa.Column("model", sa.String(128)))
    op.add_column(
        "batches", sa.Column("prompt_tokens", sa.BigInteger, nullable=False, server_default="0")
    )
    op.add_column(
        "batches",
        sa.Column("completion_tokens", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.add_column("batches", sa.Column("output_expires_seconds", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        for column in ("output_expires_seconds", "completion_tokens", "prompt_tokens", "model"):
            batch.drop_column(column)
    op.drop_index("ix_files_expires_at", "files")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("expires_at")
