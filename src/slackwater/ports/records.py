"""The records that cross the store's ports: what intake stages, what a worker leases and
settles, what the finalizer reads back, what the ledger and the planner are told."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from slackwater.domain.request import Charge, Request, RequestStatus, Result
from slackwater.domain.webhooks import WebhookEndpoint


class StagedRequest(NamedTuple):
    """A validated line, not yet runnable. A tuple: intake makes millions of them."""

    line: int
    custom_id: str
    model: str
    # JSON text, as stored. Text, not the bytes orjson gives: holding thousands of
    # those bytes objects costs ~1.5 µs each in allocation, 15x the encoding itself.
    body: str  # the body exactly as validated
    cache_key: str | None = None  # set for deterministic requests whose results can be reused
    route: str | None = None  # the route record (JSON) of a line the router placed
    prefix: str | None = None  # its prompt's leading part (domain.bodies.prefix_key)


@dataclass(frozen=True)
class CachedResult:
    status_code: int
    body: bytes


@dataclass(frozen=True)
class Retry:
    """Put a request aside until `not_before` (it failed with a retryable error)."""

    request_id: int
    not_before: datetime
    cost: Decimal = Decimal(0)  # what the failed attempt cost: charged to the ledger now


@dataclass(frozen=True)
class Escalation:
    """Run a request again on another model (its answer failed a check)."""

    request_id: int
    model: str
    body: bytes
    route: bytes
    cost: Decimal = Decimal(0)  # what the failed attempt cost: charged to the ledger now


# Check results of routed answers, (model, task) -> (passed, failed): they feed back into
# the router's quality estimates.
CheckOutcomes = Mapping[tuple[str, str], tuple[int, int]]


@dataclass(frozen=True)
class Settlement:
    """What a worker writes for its lease at one time, in one transaction: finished
    results, retries put aside, escalations to another model, and check outcomes."""

    results: Sequence[Result] = ()
    retries: Sequence[Retry] = ()
    escalations: Sequence[Escalation] = ()
    outcomes: CheckOutcomes = field(default_factory=dict)
    # Keep successful deterministic results for reuse until then (None: do not).
    cache_until: datetime | None = None


@dataclass(frozen=True)
class Delivery:
    """A webhook event waiting to be sent (an outbox row)."""

    id: int
    batch_id: str  # the event's object: a batch or a response
    event: str
    payload: bytes
    attempts: int
    event_id: str | None = None  # None: written before events had ids (`evt_<id>`)
    endpoint_id: str | None = None  # None: the configured `webhook_url`
    endpoint: WebhookEndpoint | None = None  # None with an endpoint_id: it was deleted


@dataclass(frozen=True)
class Lease:
    id: str
    model: str
    requests: list[Request]
    expires_at: datetime


class FinishedRequest(NamedTuple):
    """A request as the finalizer writes it: in input order, with its outcome. A tuple:
    a batch's finalizer reads millions of them."""

    line: int
    custom_id: str
    status: RequestStatus
    status_code: int | None
    response: bytes | None  # the JSON response (or error) body
    request_id: str
    route: bytes | None = None


@dataclass(frozen=True)
class Page:
    items: list[Any]
    has_more: bool


# What the ledger can be grouped by, and the request column each means ("day" is the
# date a request finished, in UTC).
LEDGER_GROUPS = {
    "batch": "batch_id",
    "project": "project",
    "pool": "pool",
    "model": "model",
    "engine": "engine",
    "tier": "tier",
}


@dataclass(frozen=True)
class LedgerRow:
    key: str  # a batch id, project, pool, model or day
    requests: int
    prompt_tokens: int
    completion_tokens: int
    compute_seconds: float
    cost: Decimal
    realtime_cost: Decimal
    day: str | None = None  # asked for `daily`: the day (UTC) its requests finished

    @property
    def saving(self) -> Decimal:
        return self.realtime_cost - self.cost


@dataclass(frozen=True)
class PoolSample:
    """A pool's price and availability at one moment, as its feed gave them."""

    pool: str
    at: datetime
    available: bool
    price_per_hour: Decimal


@dataclass(frozen=True)
class LedgerEntry:
    """One request's line in the ledger."""

    custom_id: str
    model: str
    engine: str | None
    pool: str | None
    prompt_tokens: int
    completion_tokens: int
    compute_seconds: float
    price: str | None
    cost: Decimal
    realtime_cost: Decimal


@dataclass(frozen=True)
class RequestView:
    """One line of a batch as the dashboard shows it: where it stands, why it ran where
    it did, what went wrong, what it cost."""

    line: int
    custom_id: str
    model: str
    status: str
    attempts: int
    status_code: int | None
    error: str | None  # the error's message, for a failed line
    route: str | None  # the router's record (JSON), for a routed line
    pool: str | None
    cost: Decimal | None
    realtime_cost: Decimal | None


@dataclass(frozen=True)
class OpenWork:
    """A batch's unfinished requests of one model, as the planner sees them."""

    batch_id: str
    model: str
    requests: int
    deadline: datetime


@dataclass(frozen=True)
class QueuedCall:
    """One API call run through the queue (a background response, a call on a queued
    tier): a request of its own, in the same queue as batch lines, by its deadline."""

    id: str  # the response's id, or `call_...`: the request's batch_id
    project: str
    model: str
    endpoint: str
    body: str  # JSON text
    deadline: datetime
    tier: str  # the service tier it was asked on
    route: str | None = None  # JSON route record of an auto-routed call


@dataclass(frozen=True)
class CallState:
    """Where a queued call stands: its request's status, and its answer once it has one."""

    id: str
    status: RequestStatus
    status_code: int | None = None
    response: bytes | None = None  # the engine's answer (JSON), or its error
    route: str | None = None  # the router's record (JSON), for a call that asked for a route


@dataclass(frozen=True)
class StoredResponse:
    id: str
    project: str
    status: str  # queued, in_progress, completed, failed, cancelled, incomplete
    service_tier: str
    request: dict[str, Any]  # the Responses body (earlier turns in its input)
    created_at: datetime
    queued: bool = False
    answer: dict[str, Any] | None = None  # the response object, once it has ended
    completed_at: datetime | None = None


@dataclass(frozen=True)
class AnsweredCall:
    """A call answered in real time, for the ledger (its body is not kept)."""

    id: str
    project: str
    model: str
    endpoint: str
    tier: str
    status_code: int
    prompt_tokens: int
    completion_tokens: int
    charge: Charge
    finished_at: datetime
