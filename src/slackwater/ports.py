"""The seams between the core and its adapters (stores, engines, blob storage)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import IO, Any, NamedTuple, Protocol

from slackwater.domain.batch import Batch, BatchStatus, LineError
from slackwater.domain.files import FileObject
from slackwater.domain.model import Model
from slackwater.domain.request import Outcome, Request, RequestStatus, Result

Clock = Callable[[], datetime]


class StagedRequest(NamedTuple):
    """A validated line, not yet runnable. A tuple: intake makes millions of them."""

    line: int
    custom_id: str
    model: str
    # JSON text, as stored. Text, not the bytes orjson gives: holding thousands of
    # those bytes objects costs ~1.5 µs each in allocation, 15x the encoding itself.
    body: str  # the body exactly as validated
    cache_key: str | None = None  # set for deterministic requests whose results can be reused
    route: str | None = None  # why the router chose this model (model "auto")


@dataclass(frozen=True)
class CachedResult:
    status_code: int
    body: bytes


@dataclass(frozen=True)
class Retry:
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


@dataclass(frozen=True)
class Delivery:
    """A webhook event waiting to be sent (an outbox row)."""

    id: int
    batch_id: str
    event: str
    payload: bytes
    attempts: int


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

    @property
    def saving(self) -> Decimal:
        return self.realtime_cost - self.cost


@dataclass(frozen=True)
class OpenWork:
    """A batch's unfinished requests of one model, as the planner sees them."""

    batch_id: str
    model: str
    requests: int
    deadline: datetime


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


class Store(Protocol):
    """Durable state. Every method is one transaction."""

    async def migrate(self) -> None: ...
    async def close(self) -> None: ...

    # files
    async def add_file(self, file: FileObject) -> None: ...
    async def get_file(self, project: str | None, file_id: str) -> FileObject: ...
    async def list_files(
        self, project: str, *, purpose: str | None, limit: int, after: str | None
    ) -> Page: ...
    async def delete_file(self, project: str, file_id: str) -> FileObject: ...

    # batches
    async def add_batch(self, batch: Batch, idempotency_key: str | None = None) -> Batch: ...
    async def get_batch(self, project: str | None, batch_id: str) -> Batch: ...
    async def list_batches(self, project: str, *, limit: int, after: str | None) -> Page: ...
    async def batch_ids_in(self, status: BatchStatus, *, settled: bool = False) -> list[str]:
        """Ids of batches in `status`, earliest deadline first; `settled`: only those
        whose every request has an outcome."""
        ...

    async def move_batch(
        self,
        batch_id: str,
        new: BatchStatus,
        now: datetime,
        *,
        errors: Sequence[LineError] = (),
        outcome: BatchStatus | None = None,
        output_file_id: str | None = None,
        error_file_id: str | None = None,
    ) -> Batch: ...

    # requests
    async def claim_intake(
        self, batch_id: str, owner: str, now: datetime, seconds: float
    ) -> bool: ...
    async def stage_requests(self, batch: Batch, rows: Sequence[StagedRequest]) -> None: ...
    async def drop_staged(self, batch_id: str) -> None: ...
    async def activate(self, batch_id: str, now: datetime) -> Batch: ...
    async def lease(
        self,
        owner: str,
        models: Sequence[str],
        limit: int,
        now: datetime,
        seconds: float,
        batches: Sequence[str] | None = None,
    ) -> Lease | None: ...
    async def heartbeat(self, lease_id: str, now: datetime, seconds: float) -> int: ...
    async def record(
        self,
        lease_id: str,
        results: Sequence[Result],
        now: datetime,
        cache_until: datetime | None = None,
    ) -> int: ...
    async def retry(self, lease_id: str, retries: Sequence[Retry]) -> int: ...
    async def escalate(self, lease_id: str, escalations: Sequence[Escalation]) -> int: ...
    async def add_outcomes(self, counts: Mapping[tuple[str, str], tuple[int, int]]) -> None: ...
    async def outcomes(self) -> dict[tuple[str, str], tuple[int, int]]: ...
    async def promote_retries(self, now: datetime) -> int: ...
    async def release(self, lease_id: str) -> int: ...
    async def reap_leases(self, now: datetime) -> int: ...
    async def close_unstarted(self, batch_id: str, status: RequestStatus) -> int: ...
    async def count_open(self, batch_id: str) -> int: ...
    def finished(self, batch_id: str, chunk: int = 2000) -> AsyncIterator[FinishedRequest]: ...

    async def cached(self, keys: Sequence[str], now: datetime) -> dict[str, CachedResult]: ...
    async def open_requests(self, project: str) -> int: ...
    async def stored_bytes(self, project: str) -> int: ...
    async def queue_depth(self) -> dict[tuple[str, str], int]: ...

    # capacity: open work per batch, live workers per pool kind
    async def open_work(self) -> list[OpenWork]: ...
    async def worker_seen(self, owner: str, pool: str, kind: str, now: datetime) -> None: ...
    async def worker_gone(self, owner: str) -> None: ...
    async def live_workers(self, kind: str, since: datetime) -> int: ...

    # the ledger
    async def ledger(
        self, by: str, project: str | None = None, since: datetime | None = None
    ) -> list[LedgerRow]: ...
    async def batch_outcomes(self, project: str | None = None) -> dict[str, int]: ...
    async def ledger_entries(self, batch_id: str, limit: int) -> list[LedgerEntry]: ...

    # webhooks (an outbox written in the same transaction as the batch's final status)
    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]: ...
    async def delivered(self, delivery_id: int, now: datetime) -> None: ...
    async def delivery_failed(
        self, delivery_id: int, error: str, next_attempt_at: datetime | None
    ) -> None: ...

    # api keys
    async def add_key(self, key_hash: str, project: str, now: datetime) -> None: ...
    async def project_for_key(self, key_hash: str) -> str | None: ...
    async def has_keys(self) -> bool: ...


class BlobStore(Protocol):
    """Where file contents live: written once through a temp file, read as streams."""

    def writer(self, key: str) -> AbstractContextManager[IO[bytes]]: ...
    def open(self, key: str) -> IO[bytes]: ...
    def path(self, key: str) -> str: ...
    async def delete(self, key: str) -> None: ...
    async def size(self, key: str) -> int: ...


class Engine(Protocol):
    """Runs a list of request bodies on one model. One instance per Model."""

    model: Model
    # Runs one call at a time (a local model on one device): calls queue for it, so
    # batch steps are let in one by one and a realtime call goes ahead of the queue.
    serial: bool

    async def start(self) -> None: ...
    async def run(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class PoolState:
    """What a pool offers now, as its feed sees it."""

    available: bool
    price_per_hour: Decimal
    mean_uptime_seconds: float | None = None  # of recent spot runs, where known


class PriceFeed(Protocol):
    async def state(self, now: datetime) -> PoolState: ...
