"""Tables, as SQLAlchemy Core metadata. Alembic migrations create them; keep both in step."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime passed to the store")
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text: keep one naive UTC format there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


RowId = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData()

files = Table(
    "files",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("filename", Text, nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("lines", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Index("ix_files_project_id", "project", "id"),
    Index("ix_files_expires_at", "expires_at"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("input_file_id", String(40), nullable=False),
    Column("completion_window", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("outcome", String(16)),
    Column("metadata", Text),
    Column("errors", Text),
    Column("output_file_id", String(40)),
    Column("error_file_id", String(40)),
    Column("total", BigInteger, nullable=False, default=0),
    Column("completed", BigInteger, nullable=False, default=0),
    Column("failed", BigInteger, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("in_progress_at", UtcDateTime),
    Column("finalizing_at", UtcDateTime),
    Column("completed_at", UtcDateTime),
    Column("failed_at", UtcDateTime),
    Column("expired_at", UtcDateTime),
    Column("cancelling_at", UtcDateTime),
    Column("cancelled_at", UtcDateTime),
    Column("idempotency_key", String(255)),
    Column("retried_from", String(40)),
    # Which process validates the batch, until when (renewed as it goes).
    Column("intake_owner", String(80)),
    Column("intake_until", UtcDateTime),
    Column("cost_nano", BigInteger, nullable=False, server_default="0"),
    Column("realtime_nano", BigInteger, nullable=False, server_default="0"),
    Column("model", String(128)),  # the model of every request, when there is one
    Column("prompt_tokens", BigInteger, nullable=False, server_default="0"),
    Column("completion_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_expires_seconds", Integer),  # output files expire this long after made
    Column("api", String(16), nullable=False, server_default="openai"),  # which API made it
    Index("ix_batches_project_id", "project", "id"),
    Index("ix_batches_idempotency", "project", "idempotency_key", unique=True),
    Index("ix_batches_status", "status"),
)

requests = Table(
    "requests",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("batch_id", String(40), nullable=False),
    Column("line", BigInteger, nullable=False),
    Column("custom_id", Text, nullable=False),
    Column("model", String(128), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("deadline", UtcDateTime, nullable=False),
    Column("lease_id", String(40)),
    Column("lease_expires_at", UtcDateTime),
    Column("attempts", Integer, nullable=False, default=0),
    Column("status_code", Integer),
    Column("response", Text),
    Column("finished_at", UtcDateTime),
    Column("project", String(128), nullable=False, server_default="default"),
    # Leasing order: `urgency` (the deadline in 5-minute steps) first, then `fair_rank`,
    # which interleaves projects (start-time fair queuing).
    Column("urgency", BigInteger, nullable=False, server_default="0"),
    Column("fair_rank", BigInteger, nullable=False, server_default="0"),
    Column("not_before", UtcDateTime),
    Column("cache_key", String(64)),
    Column("route", Text),  # JSON: the router's choice and reason, earlier attempts
    # The ledger: where the request ran and what it cost; money in nanodollars, exact.
    Column("pool", String(64)),
    Column("engine", String(64)),
    Column("price", String(64)),
    Column("prompt_tokens", BigInteger),
    Column("completion_tokens", BigInteger),
    Column("compute_us", BigInteger),
    Column("cost_nano", BigInteger),
    Column("realtime_nano", BigInteger),
    # The service tier it was asked on: "batch" for batch lines, else the call's tier.
    Column("tier", String(32), nullable=False, server_default="batch"),
    # Its prompt's leading part (domain.bodies.prefix_key): leased with those sharing it.
    Column("prefix", String(16)),
    Index("ix_requests_batch_line", "batch_id", "line", unique=True),
    # Partial indexes: a request enters each only while in that state, so a request's
    # life costs a few index writes, not one per status change per index.
    Index(
        "ix_requests_pending",
        "model",
        "urgency",
        "fair_rank",
        "id",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
    Index(
        "ix_requests_prefix",
        "model",
        "prefix",
        "urgency",
        "fair_rank",
        "id",
        sqlite_where=text("status = 'pending' AND prefix IS NOT NULL"),
        postgresql_where=text("status = 'pending' AND prefix IS NOT NULL"),
    ),
    Index(
        "ix_requests_leased",
        "lease_expires_at",
        sqlite_where=text("status = 'leased'"),
        postgresql_where=text("status = 'leased'"),
    ),
    Index(
        "ix_requests_retrying",
        "not_before",
        sqlite_where=text("status = 'retrying'"),
        postgresql_where=text("status = 'retrying'"),
    ),
    Index(
        "ix_requests_lease",
        "lease_id",
        sqlite_where=text("lease_id IS NOT NULL"),
        postgresql_where=text("lease_id IS NOT NULL"),
    ),
    # The ledger's requests not yet in `ledger_rollup`: finished after its watermark, or
    # charged for attempts and not finished.
    Index(
        "ix_requests_charged",
        "finished_at",
        sqlite_where=text("cost_nano IS NOT NULL"),
        postgresql_where=text("cost_nano IS NOT NULL"),
    ),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", String(128), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("id", String(40)),
    Column("name", Text),
    Column("scope", String(16), nullable=False, server_default="all"),
    Column("expires_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
    Index("ix_api_keys_id", "id", unique=True),
    Index("ix_api_keys_project", "project"),
)

projects = Table(
    "projects",
    metadata,
    Column("project", String(128), primary_key=True),
    Column("next_rank", BigInteger, nullable=False),
)

scheduler_state = Table(
    "scheduler_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# The ledger summed by day and its groups, for requests finished before the watermark
# in scheduler_state (docs/decisions/0015): reports add the few requests after it, so
# they read thousands of rows, not millions. '' stands for a missing pool, engine or day.
ledger_rollup = Table(
    "ledger_rollup",
    metadata,
    Column("project", String(128), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("model", String(128), primary_key=True),
    Column("tier", String(32), primary_key=True),
    Column("pool", String(64), primary_key=True),
    Column("engine", String(64), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("compute_us", BigInteger, nullable=False),
    Column("cost_nano", BigInteger, nullable=False),
    Column("realtime_nano", BigInteger, nullable=False),
)

# Each pool's price and availability as its feed gave them, sampled by the server.
pool_samples = Table(
    "pool_samples",
    metadata,
    Column("pool", String(64), primary_key=True),
    Column("at", UtcDateTime, primary_key=True),
    Column("available", Boolean, nullable=False),
    Column("price_per_hour", String(32), nullable=False),  # a decimal, exact
)

result_cache = Table(
    "result_cache",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("status_code", Integer, nullable=False),
    Column("response", Text, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("batch_id", String(40), nullable=False),  # the event's object: a batch or response
    Column("event", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
    Column("last_error", Text),
    Column("created_at", UtcDateTime, nullable=False),
    # Where it goes: an endpoint of the event's project, or (NULL) the configured
    # `webhook_url`; the event's id is the same for every endpoint and attempt.
    Column("endpoint_id", String(40)),
    Column("event_id", String(40)),
    Index("ix_webhook_due", "delivered_at", "next_attempt_at"),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("name", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("event_types", Text, nullable=False),  # JSON list
    Column("secret", String(128), nullable=False),
    Column("previous_secret", String(128)),
    Column("previous_until", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_webhook_endpoints_project", "project", "id"),
)

model_outcomes = Table(
    "model_outcomes",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("task", String(128), primary_key=True),  # "" when the request named none
    Column("passed", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
)

# Workers alive in each pool (the planner counts live spot workers as spot capacity).
workers = Table(
    "workers",
    metadata,
    Column("owner", String(120), primary_key=True),
    Column("pool", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
)

# Responses (the Responses API). A queued one (background, or a queued tier) has a
# request in `requests` whose batch_id is the response's id.
responses = Table(
    "responses",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("service_tier", String(32), nullable=False),
    Column("request", Text, nullable=False),  # the Responses body, earlier turns included
    Column("answer", Text),  # the response object once it has ended
    Column("queued", Integer, nullable=False, server_default="0"),
    Column("created_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime),
    Index("ix_responses_open", "status"),
)

# Sessions (durable agent runs). A waiting one is woken through an index: its timer
# (`wake_at`), an event sent to it, or the last of its calls (`session_calls`) settling.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("agent", String(256), nullable=False),
    Column("version", String(64), nullable=False),
    Column("arguments", Text, nullable=False),  # JSON
    Column("status", String(16), nullable=False),
    Column("steps", Integer, nullable=False, server_default="0"),
    Column("wait_until", UtcDateTime),
    Column("wait_event", String(256)),
    Column("wake_at", UtcDateTime),  # when a worker may take it: now, a timer, or a lease end
    Column("owner", String(128)),
    Column("result", Text),  # JSON
    Column("error", Text),  # JSON
    Column("active_seconds", Float, nullable=False, server_default="0"),
    Column("forked_from", String(40)),
    Column("forked_at", Integer),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Index("ix_sessions_due", "status", "wake_at"),
    Index("ix_sessions_project", "project", "id"),
)

session_journal = Table(
    "session_journal",
    metadata,
    Column("session_id", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("name", Text, nullable=False),
    Column("value", Text),  # JSON, unless kept as a blob
    Column("blob", Text),
    Column("created_at", UtcDateTime, nullable=False),
)

# The calls (queued requests, by batch_id) a waiting session waits for.
session_calls = Table(
    "session_calls",
    metadata,
    Column("call_id", String(64), primary_key=True),
    Column("session_id", String(40), nullable=False),
    Index("ix_session_calls_session", "session_id"),
)

# Events sent to sessions; one is taken by the wait it resolves (`taken`: its seq).
session_events = Table(
    "session_events",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("session_id", String(40), nullable=False),
    Column("key", String(256), nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    Column("taken", Integer),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_session_events_open", "session_id", "key", "taken"),
)

# Dataset jobs of classical models, their recorded chunks, and precomputed predictions
# by key: each job writes a version of its model's predictions; `prediction_versions`
# names the version readers see, switched when a job completes.
prediction_jobs = Table(
    "prediction_jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    Column("source", Text, nullable=False),
    Column("format", String(16), nullable=False),
    Column("key", String(256), nullable=False),
    Column("keep", Text, nullable=False),  # JSON list of columns
    Column("output", String(32), nullable=False),
    Column("chunk_rows", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("schedule_id", String(40)),
    Column("rows_done", BigInteger, nullable=False, server_default="0"),
    Column("chunks_done", Integer, nullable=False, server_default="0"),
    Column("total_rows", BigInteger),
    Column("estimated_rows", BigInteger),  # at submission, for the planner
    Column("compute_us", BigInteger, nullable=False, server_default="0"),
    Column("error", Text),
    Column("result", Text),
    Column("owner", String(128)),
    Column("lease_expires_at", UtcDateTime),
    Column("deadline", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Index("ix_prediction_jobs_due", "status", "deadline"),
    Index("ix_prediction_jobs_project", "project", "id"),
    Index("ix_prediction_jobs_schedule", "schedule_id", "id"),
)

prediction_chunks = Table(
    "prediction_chunks",
    metadata,
    Column("job_id", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("rows", Integer, nullable=False),
    Column("compute_us", BigInteger, nullable=False),
)

predictions = Table(
    "predictions",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("version", String(40), primary_key=True),
    Column("key", String(256), primary_key=True),
    Column("value", Text, nullable=False),  # JSON
)

prediction_versions = Table(
    "prediction_versions",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("version", String(40), nullable=False),
    Column("computed_at", UtcDateTime, nullable=False),
)

# Dataset jobs run on a window: each due run is a job (`prediction_jobs.schedule_id`).
prediction_schedules = Table(
    "prediction_schedules",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("model", String(128), nullable=False),
    Column("source", Text, nullable=False),
    Column("key", String(256), nullable=False),
    Column("keep", Text, nullable=False),  # JSON list of columns
    Column("output", String(32), nullable=False),
    Column("chunk_rows", Integer, nullable=False),
    Column("every_seconds", Float),
    Column("cron", String(128)),
    Column("next_run_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_prediction_schedules_due", "next_run_at"),
    Index("ix_prediction_schedules_project", "project", "id"),
)
