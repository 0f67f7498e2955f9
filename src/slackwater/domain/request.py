"""Request: one unit of work (one JSONL line or one API call), and its outcome."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any


class RequestStatus(StrEnum):
    STAGED = "staged"  # ingested, batch still validating: not runnable yet
    PENDING = "pending"
    RETRYING = "retrying"  # failed with a retryable error; pending again at not_before
    LEASED = "leased"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Request:
    """A runnable request as a worker sees it."""

    id: int
    batch_id: str
    custom_id: str
    model: str
    endpoint: str
    body: dict[str, Any]
    attempts: int = 0
    cache_key: str | None = None
    route: str | None = None  # JSON route record of an auto-routed request
    tier: str = "batch"  # the service tier it was asked on ("batch": a batch line)
    urgency: int = 0  # its deadline in the queue's steps (policy.fairness)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Outcome:
    """What an engine returned for one request: an OpenAI response body or an error."""

    status_code: int
    body: dict[str, Any]
    usage: Usage = Usage()
    retryable: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    @classmethod
    def error(
        cls,
        status_code: int,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        param: str | None = None,
    ) -> Outcome:
        error = {
            "message": message,
            "type": "invalid_request_error" if status_code < 500 else "server_error",
            "param": param,
            "code": code,
        }
        return cls(status_code=status_code, body={"error": error}, retryable=retryable)


@dataclass(frozen=True)
class Charge:
    """A request's line in the ledger: where it ran, and what it cost against real time."""

    pool: str
    compute_seconds: float
    cost: Decimal  # US dollars
    realtime_cost: Decimal  # the same tokens at the model's realtime price
    engine: str = ""
    price: str = ""  # the rate applied: "$0.9/hour" or "$0.075/$0.3 per M tokens"


@dataclass(frozen=True)
class Result:
    """An outcome to record against a leased request."""

    request_id: int
    outcome: Outcome
    charge: Charge | None = None
