"""Sessions (durable agent runs): their journal, the calls a waiting one waits for, and
the events sent to them.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

from slackwater.store.schema import RowId, UtcDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("arguments", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("steps", sa.Integer, nullable=False, server_default="0"),
        sa.Column("wait_until", UtcDateTime),
        sa.Column("wait_event", sa.String(256)),
        sa.Column("wake_at", UtcDateTime),
        sa.Column("owner", sa.String(128)),
        sa.Column("result", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("active_seconds", sa.Float, nullable=False, server_default="0"),
        sa.Column("forked_from", sa.String(40)),
        sa.Column("forked_at", sa.Integer),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("finished_at", UtcDateTime),
    )
    op.create_index("ix_sessions_due", "sessions", ["status", "wake_at"])
    op.create_index("ix_sessions_project", "sessions", ["project", "id"])
    op.create_table(
        "session_journal",
        sa.Column("session_id", sa.String(40), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("value", sa.Text),
        sa.Column("blob", sa.Text),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "session_calls",
        sa.Column("call_id", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.String(40), nullable=False),
    )
    op.create_index("ix_session_calls_session", "session_calls", ["session_id"])
    op.create_table(
        "session_events",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("taken", sa.Integer),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_session_events_open", "session_events", ["session_id", "key", "taken"])


def downgrade() -> None:
    op.drop_index("ix_session_events_open", "session_events")
    op.drop_table("session_events")
    op.drop_index("ix_session_calls_session", "session_calls")
    op.drop_table("session_calls")
    op.drop_table("session_journal")
    op.drop_index("ix_sessions_project", "sessions")
    op.drop_index("ix_sessions_due", "sessions")
    op.drop_table("sessions")
