"""Batch: requests submitted together with a completion window, and its state machine.

validating ──► in_progress ──► finalizing ──► completed
 │    │              │    (window ran out) └──► expired
 │    ▼              ▼
 │  failed       cancelling ──► cancelled
 └───────────────────▲
     (cancelled while validating)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from slackwater.domain.errors import Conflict


class BatchStatus(StrEnum):
    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {BatchStatus.FAILED, BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
)

_ALLOWED: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.VALIDATING: frozenset(
        {BatchStatus.IN_PROGRESS, BatchStatus.FAILED, BatchStatus.CANCELLING}
    ),
    BatchStatus.IN_PROGRESS: frozenset({BatchStatus.FINALIZING, BatchStatus.CANCELLING}),
    BatchStatus.FINALIZING: frozenset({BatchStatus.COMPLETED, BatchStatus.EXPIRED}),
    BatchStatus.CANCELLING: frozenset({BatchStatus.CANCELLED}),
}


def can_transition(old: BatchStatus, new: BatchStatus) -> bool:
    return new in _ALLOWED.get(old, frozenset())


def check_transition(batch_id: str, old: BatchStatus, new: BatchStatus) -> None:
    if not can_transition(old, new):
        raise Conflict(f"batch {batch_id} is {old.value}; it cannot become {new.value}")


class Endpoint(StrEnum):
    CHAT = "/v1/chat/completions"
    COMPLETIONS = "/v1/completions"
    EMBEDDINGS = "/v1/embeddings"
    RESPONSES = "/v1/responses"  # run as chat completions (domain/responses.py)
    PREDICTIONS = "/v1/predictions"  # classical models: rows in, one output each


@dataclass(frozen=True)
class RequestCounts:
    total: int = 0
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class LineError:
    """One reason a batch input file was rejected, as OpenAI's `errors.data[]`."""

    code: str
    message: str
    line: int | None = None
    param: str | None = None


@dataclass(frozen=True)
class Batch:
    id: str
    project: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: BatchStatus
    created_at: datetime
    expires_at: datetime
    metadata: dict[str, str] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[LineError] = field(default_factory=list)
    request_counts: RequestCounts = RequestCounts()
    in_progress_at: datetime | None = None
    finalizing_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    expired_at: datetime | None = None
    cancelling_at: datetime | None = None
    cancelled_at: datetime | None = None
    # Why finalizing was entered: decides the terminal status the finalizer writes.
    outcome: BatchStatus | None = None
    retried_from: str | None = None
    cost: Decimal = Decimal(0)  # what its requests cost so far, US dollars
    realtime_cost: Decimal = Decimal(0)  # ... and would have cost in real time
    model: str | None = None  # the model of every request, when they share one
    prompt_tokens: int = 0
    completion_tokens: int = 0
    output_expires_seconds: int | None = None  # output files expire this long after made
    api: str = "openai"  # the API that made it: "openai" (Batches), "anthropic" (Messages)


# The timestamp column set when a batch enters each status.
STATUS_TIMESTAMP: dict[BatchStatus, str] = {
    BatchStatus.IN_PROGRESS: "in_progress_at",
    BatchStatus.FINALIZING: "finalizing_at",
    BatchStatus.COMPLETED: "completed_at",
    BatchStatus.FAILED: "failed_at",
    BatchStatus.EXPIRED: "expired_at",
    BatchStatus.CANCELLING: "cancelling_at",
    BatchStatus.CANCELLED: "cancelled_at",
}
