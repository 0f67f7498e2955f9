"""API keys get an id, a name, a scope, an expiry and a revocation time.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("id", sa.String(40)))
        batch.add_column(sa.Column("name", sa.Text))
        batch.add_column(sa.Column("scope", sa.String(16), nullable=False, server_default="all"))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True)))
    # Keys made before ids existed are named after their hash (not the key itself).
    op.execute("UPDATE api_keys SET id = 'key_' || substr(key_hash, 8, 24) WHERE id IS NULL")
    op.create_index("ix_api_keys_id", "api_keys", ["id"], unique=True)
    op.create_index("ix_api_keys_project", "api_keys", ["project"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_project", "api_keys")
    op.drop_index("ix_api_keys_id", "api_keys")
    with op.batch_alter_table("api_keys") as batch:
        for column in ("revoked_at", "expires_at", "scope", "name", "id"):
            batch.drop_column(column)
