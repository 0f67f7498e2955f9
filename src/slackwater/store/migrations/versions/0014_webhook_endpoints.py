"""Webhook endpoints (per project, Standard Webhooks), and deliveries per endpoint.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event_types", sa.Text, nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("previous_secret", sa.String(128)),
        sa.Column("previous_until", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhook_endpoints_project", "webhook_endpoints", ["project", "id"])
    with op.batch_alter_table("webhook_deliveries") as table:
        table.add_column(sa.Column("endpoint_id", sa.String(40)))
        table.add_column(sa.Column("event_id", sa.String(40)))
        table.alter_column("event", type_=sa.String(64))


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as table:
        table.drop_column("event_id")
        table.drop_column("endpoint_id")
    op.drop_index("ix_webhook_endpoints_project", "webhook_endpoints")
    op.drop_table("webhook_endpoints")
