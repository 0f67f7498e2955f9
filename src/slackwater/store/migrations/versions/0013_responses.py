"""Responses (the Responses API): stored answers, and background ones run from the queue;
the service tier each request was served on.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("service_tier", sa.String(32), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("answer", sa.Text),
        sa.Column("queued", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_responses_open", "responses", ["status"])
    with op.batch_alter_table("requests") as table:
        table.add_column(sa.Column("tier", sa.String(32), nullable=False, server_default="batch"))


def downgrade() -> None:
    with op.batch_alter_table("requests") as table:
        table.drop_column("tier")
    op.drop_index("ix_responses_open", "responses")
    op.drop_table("responses")
