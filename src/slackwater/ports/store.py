"""The store, as the parts that use it see it: one small role protocol per user.

Each runtime part depends on the narrowest role it needs; `Store` is all of them, what
a backend implements and what the contract suite (tests/contract/test_store.py) checks.

    role            used by                       methods
    Lifecycle       app wiring                    migrate, close
    FileStore       Files API                     add/get/list/delete_file, stored_bytes
    BatchStore      Batches API (create, retry)   add/get/list_batches, move_batch, ...
    IntakeStore     intake                        claim_intake, stage_requests, activate, ...
    WorkerStore     workers                       lease, heartbeat, record, release, ...
    MonitorStore    the monitor                   reap_leases, promote_retries, ...
    FinalizerStore  the finalizer                 finished, move_batch, file records
    OutboxStore     the webhook sender            due_deliveries, delivered, ...
    KeyStore        API keys                      add_key, project_for_key, has_keys
    CapacityStore   placement (the planner)       open_work, live_workers, ledger
    ReportStore     `slackwater report`, metrics  ledger, ledger_entries, ...
    CallStore       queued calls, Responses API   enqueue_call, call_states, get_response, ...
    EndpointStore   webhook endpoints             add/get/list/change/delete_endpoint

Every method is one transaction. Methods that only read never wait for a writer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from slackwater.domain.batch import Batch, BatchStatus, LineError
from slackwater.domain.files import FileObject
from slackwater.domain.keys import ApiKey
from slackwater.domain.predictions import (
    Chunk,
    JobStatus,
    OpenJob,
    Precomputed,
    PredictionJob,
)
from slackwater.domain.request import RequestStatus
from slackwater.domain.schedules import Schedule
from slackwater.domain.sessions import Entry, Session, SessionStatus, Waiting
from slackwater.domain.webhooks import WebhookEndpoint
from slackwater.ports.records import (
    AnsweredCall,
    CachedResult,
    CallState,
    Delivery,
    FinishedRequest,
    Lease,
    LedgerEntry,
    LedgerRow,
    OpenWork,
    Page,
    PoolSample,
    QueuedCall,
    RequestView,
    Settlement,
    StagedRequest,
    StoredResponse,
)


class Lifecycle(Protocol):
    async def migrate(self) -> None: ...
    async def close(self) -> None: ...


class _FileRecords(Protocol):
    async def add_file(self, file: FileObject) -> None: ...
    async def get_file(self, project: str | None, file_id: str) -> FileObject:
        """The file (of `project`, unless None); NotFound otherwise."""
        ...


class _BatchReads(Protocol):
    async def get_batch(self, project: str | None, batch_id: str) -> Batch:
        """The batch (of `project`, unless None); NotFound otherwise."""
        ...


class _BatchMoves(Protocol):
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
    ) -> Batch:
        """Move the batch along its state machine (Conflict if the move is not allowed).
        Entering cancelling or failed closes its unstarted requests; entering a final
        status writes the webhook outbox row in the same transaction."""
        ...


class _Finished(Protocol):
    def finished(self, batch_id: str, chunk: int = 2000) -> AsyncIterator[FinishedRequest]:
        """Every request of the batch in input order, read in bounded chunks."""
        ...


class FileStore(_FileRecords, Protocol):
    async def list_files(
        self,
        project: str,
        *,
        purpose: str | None,
        limit: int,
        after: str | None,
        order: str = "desc",
    ) -> Page:
        """The project's files by creation, newest first (`order` "asc": oldest)."""
        ...

    async def expired_files(self, now: datetime, limit: int) -> list[FileObject]:
        """Files (of any project) whose `expires_at` has passed, soonest first."""
        ...

    async def delete_file(self, project: str, file_id: str) -> FileObject:
        """Delete the file's record; Conflict while a validating batch reads it."""
        ...

    async def stored_bytes(self, project: str) -> int: ...


class BatchStore(_FileRecords, _BatchReads, _BatchMoves, _Finished, Protocol):
    async def add_batch(self, batch: Batch, idempotency_key: str | None = None) -> Batch:
        """Store a new batch; with an idempotency key already used, the first batch."""
        ...

    async def list_batches(
        self, project: str, *, limit: int, after: str | None, api: str | None = None
    ) -> Page:
        """The project's batches, newest first (of one API only, if `api` is given)."""
        ...

    async def request_statuses(self, batch_id: str) -> dict[str, int]:
        """How many of the batch's requests are in each RequestStatus."""
        ...

    async def delete_batch(self, project: str, batch_id: str) -> Batch:
        """Delete an ended batch and its requests (Conflict while it runs); its files
        are the caller's to delete."""
        ...

    async def open_requests(self, project: str) -> int:
        """Requests of the project's batches that are queued, validating or running."""
        ...


class IntakeStore(_FileRecords, _BatchReads, _BatchMoves, Protocol):
    async def claim_intake(self, batch_id: str, owner: str, now: datetime, seconds: float) -> bool:
        """Take (or renew) the right to validate a batch; False if another holds it."""
        ...

    async def stage_requests(self, batch: Batch, rows: Sequence[StagedRequest]) -> None: ...
    async def drop_staged(self, batch_id: str) -> None: ...
    async def activate(self, batch_id: str, now: datetime) -> Batch:
        """Make a validated batch's staged requests runnable; the batch in_progress."""
        ...

    async def outcomes(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Check outcomes recorded so far, (model, task) -> (passed, failed)."""
        ...


class WorkerStore(Protocol):
    async def lease(
        self,
        owner: str,
        models: Sequence[str],
        limit: int,
        now: datetime,
        seconds: float,
        batches: Sequence[str] | None = None,
        *,
        pack_prefixes: bool = False,
    ) -> Lease | None:
        """Up to `limit` pending requests of one of `models` (of `batches`, if given),
        most urgent first, then fairest between projects. `pack_prefixes`: requests whose
        prompts share a leading part come together, within a deadline step."""
        ...

    async def pending_heads(
        self, models: Sequence[str], batches: Sequence[str] | None = None, cap: int = 1024
    ) -> dict[str, tuple[int, datetime]]:
        """For each of `models` with pending requests (of `batches`, if given): how many
        (counted up to `cap`), and the deadline of the one to be leased first."""
        ...

    async def heartbeat(self, lease_id: str, now: datetime, seconds: float) -> int: ...
    async def record(self, lease_id: str, settlement: Settlement, now: datetime) -> int:
        """Write what a worker settled for requests its lease still holds, dropping the
        rest; returns how many results and retries were written. Idempotent."""
        ...

    async def release(self, lease_id: str) -> int:
        """Give a lease's unfinished requests back to the queue (drain, shutdown)."""
        ...

    async def cached(self, keys: Sequence[str], now: datetime) -> dict[str, CachedResult]: ...
    async def worker_seen(self, owner: str, pool: str, kind: str, now: datetime) -> None: ...
    async def worker_gone(self, owner: str) -> None: ...


class MonitorStore(_BatchReads, _BatchMoves, Protocol):
    async def reap_leases(self, now: datetime) -> int:
        """Return requests whose lease ran out (a dead or stuck worker) to the queue."""
        ...

    async def promote_retries(self, now: datetime) -> int: ...
    async def batch_ids_in(self, status: BatchStatus, *, settled: bool = False) -> list[str]:
        """Ids of batches in `status`, earliest deadline first; `settled`: only those
        whose every request has an outcome."""
        ...

    async def close_unstarted(self, batch_id: str, status: RequestStatus) -> int: ...
    async def count_open(self, batch_id: str) -> int:
        """Requests of the batch that are queued or running."""
        ...

    async def roll_up_ledger(self, now: datetime) -> int:
        """Sum the ledger's older requests into its rollup (reports read the sums and the
        few requests after them); how many requests it added."""
        ...


class FinalizerStore(_FileRecords, _BatchMoves, _Finished, Protocol):
    pass


class OutboxStore(_BatchReads, Protocol):
    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]: ...
    async def delivered(self, delivery_id: int, now: datetime) -> None: ...
    async def delivery_failed(
        self, delivery_id: int, error: str, next_attempt_at: datetime | None
    ) -> None:
        """Note a failed attempt; with no next attempt the delivery is given up."""
        ...


class KeyStore(Protocol):
    async def add_key(self, key: ApiKey, key_hash: str) -> None:
        """Store a key by the hash of its secret (the secret itself is never stored)."""
        ...

    async def key_for(self, key_hash: str, now: datetime) -> ApiKey | None:
        """The key with this hash if it is active now (not revoked, not expired)."""
        ...

    async def list_keys(self, project: str | None = None) -> list[ApiKey]: ...
    async def revoke_key(self, key_id: str, now: datetime) -> ApiKey: ...
    async def has_keys(self) -> bool: ...


class _Ledger(Protocol):
    async def ledger(
        self,
        by: str,
        project: str | None = None,
        since: datetime | None = None,
        *,
        session: str | None = None,
        daily: bool = False,
    ) -> list[LedgerRow]:
        """Requests' costs summed by batch, project, pool, model, engine, tier, session or
        day (`session`: that session's inferences only; `daily`: and by day, in order of
        day)."""
        ...


class CapacityStore(_Ledger, Protocol):
    async def open_work(self) -> list[OpenWork]: ...
    async def pool_samples(self, since: datetime) -> list[PoolSample]:
        """Every pool's samples since `since`, by pool, oldest first."""
        ...

    async def open_jobs(self) -> list[OpenJob]:
        """Dataset jobs not ended, sized for the planner."""
        ...

    async def live_workers(self, pool: str, since: datetime) -> int:
        """Workers of the pool (by name) seen since then."""
        ...

    async def running_in(self, since: datetime) -> dict[str, str]:
        """The pool each batch ran its latest request in, of those charged since then."""
        ...

    async def reroute(self, batch_id: str, model: str, to: str) -> int:
        """Move the batch's requests of `model` that wait (pending, or to be retried) to
        model `to`; those leased finish where they are. How many moved."""
        ...


class PoolHistoryStore(Protocol):
    async def add_pool_samples(self, samples: Sequence[PoolSample]) -> None: ...
    async def pool_samples(self, since: datetime) -> list[PoolSample]:
        """Every pool's samples since `since`, by pool, oldest first."""
        ...

    async def forget_pool_samples(self, before: datetime) -> int: ...


class ReportStore(_Ledger, Protocol):
    async def ledger_entries(self, batch_id: str, limit: int) -> list[LedgerEntry]: ...
    async def recent_routes(self, project: str, limit: int) -> list[str]:
        """The router's records (JSON) of the project's latest routed requests."""
        ...

    async def batch_requests(
        self,
        batch_id: str,
        *,
        after_line: int = 0,
        limit: int = 50,
        custom_id: str | None = None,
        failed_only: bool = False,
    ) -> list[RequestView]:
        """A batch's lines in order from `after_line` (those whose custom_id contains
        `custom_id`; failed or retrying ones only, if asked)."""
        ...

    async def batch_outcomes(self, project: str | None = None) -> dict[str, int]: ...
    async def queue_depth(self) -> dict[tuple[str, str], int]:
        """Requests not finished, per (model, status)."""
        ...


class CallStore(Protocol):
    async def enqueue_call(
        self, call: QueuedCall, now: datetime, response: StoredResponse | None = None
    ) -> None:
        """Queue the call as a request of its own (and store its response, if given),
        in one transaction."""
        ...

    async def call_states(self, ids: Sequence[str]) -> dict[str, CallState]:
        """Where each of the calls stands (calls not found are left out)."""
        ...

    async def waiting_calls(self, tier: str) -> int:
        """Calls of the tier in the queue that no worker has taken yet."""
        ...

    async def cancel_call(self, call_id: str, now: datetime) -> bool:
        """End the call's request if it has not finished; False if it had."""
        ...

    async def record_calls(self, calls: Sequence[AnsweredCall]) -> None:
        """Put calls answered in real time in the ledger, in one transaction."""
        ...

    async def add_response(self, response: StoredResponse) -> None: ...
    async def get_response(self, project: str | None, response_id: str) -> StoredResponse:
        """The response (of `project`, unless None); NotFound otherwise."""
        ...

    async def open_responses(self, limit: int) -> list[StoredResponse]:
        """Queued responses that have not ended, oldest first."""
        ...

    async def end_response(
        self, response_id: str, status: str, answer: dict[str, Any], now: datetime
    ) -> bool:
        """End a response that is still open with its final object (a background one's
        webhook event in the same transaction); False if it was not open (ended already,
        by this process or another)."""
        ...

    async def delete_response(self, project: str, response_id: str) -> None:
        """Delete the response and its queued request; NotFound if there is none."""
        ...


class EndpointStore(Protocol):
    async def add_endpoint(self, endpoint: WebhookEndpoint) -> None: ...
    async def get_endpoint(self, project: str, endpoint_id: str) -> WebhookEndpoint:
        """The project's endpoint; NotFound otherwise."""
        ...

    async def list_endpoints(self, project: str, *, limit: int, after: str | None) -> Page:
        """The project's endpoints, newest first."""
        ...

    async def change_endpoint(
        self,
        project: str,
        endpoint_id: str,
        now: datetime,
        *,
        name: str | None = None,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        secret: str | None = None,
        previous_until: datetime | None = None,
    ) -> WebhookEndpoint:
        """Change what is given (None: unchanged). A new `secret` replaces the current
        one, which keeps signing until `previous_until` if that is given."""
        ...

    async def delete_endpoint(self, project: str, endpoint_id: str) -> None:
        """Delete it; its undelivered events are dropped. NotFound if there is none."""
        ...


class SessionStore(_Ledger, Protocol):
    """Sessions (durable agent runs): what a session worker and the sessions API need.
    Writes by a worker (`owner`) count only while it holds the session's lease."""

    async def add_session(self, session: Session) -> None: ...
    async def get_session(self, project: str | None, session_id: str) -> Session:
        """The session (of `project`, unless None); NotFound otherwise."""
        ...

    async def list_sessions(self, project: str, *, limit: int, after: str | None) -> Page:
        """The project's sessions, newest first."""
        ...

    async def session_counts(self) -> dict[tuple[str, str], int]:
        """Sessions not ended, per (agent, status): queued, running, waiting."""
        ...

    async def claim_sessions(
        self, owner: str, now: datetime, lease_seconds: float, limit: int
    ) -> list[Session]:
        """Take due sessions (queued, a timer run out, a lease run out), leased to `owner`."""
        ...

    async def hold_session(
        self, session_id: str, owner: str, now: datetime, lease_seconds: float
    ) -> bool:
        """Extend the lease; False if `owner` no longer holds it."""
        ...

    async def journal(self, session_id: str) -> list[Entry]:
        """The session's journal, in order."""
        ...

    async def append_entry(
        self,
        session_id: str,
        owner: str,
        entry: Entry,
        now: datetime,
        *,
        event_id: int | None = None,
    ) -> bool:
        """Journal one entry at the journal's end (taking the event `event_id`, if given),
        in one transaction; False if `owner` lost the lease or the place is taken."""
        ...

    async def suspend_session(
        self, session_id: str, owner: str, waiting: Waiting, now: datetime, active: float
    ) -> bool:
        """Leave the session waiting (or queued at once, if what it waits for is there
        already: an event sent before the wait, calls finished); False if not owned."""
        ...

    async def wake_for_calls(self, call_ids: Sequence[str], now: datetime) -> int:
        """Queue the waiting sessions whose last calls these are; how many were woken."""
        ...

    async def end_session(
        self,
        session_id: str,
        owner: str,
        status: SessionStatus,
        now: datetime,
        active: float,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> bool: ...
    async def send_event(
        self, project: str, session_id: str, key: str, payload: Any, now: datetime
    ) -> None:
        """Keep an event for the session (waking it if it waits for `key`); NotFound,
        or Conflict if the session has ended."""
        ...

    async def take_event(self, session_id: str, key: str) -> tuple[int, Any] | None:
        """The oldest event of `key` not taken yet: (id, payload)."""
        ...

    async def cancel_session(self, project: str, session_id: str, now: datetime) -> Session:
        """Cancel a session that has not ended; Conflict if it has otherwise."""
        ...

    async def fork_session(
        self, project: str, session_id: str, upto: int, fork: Session
    ) -> Session:
        """Add `fork` with the first `upto` entries of the session's journal;
        InvalidRequest past the journal's end."""
        ...


class PredictionStore(Protocol):
    """Dataset jobs and precomputed predictions (store/predictions.py). A runner's writes
    (`owner`) count only while it holds the job's lease."""

    async def add_job(self, job: PredictionJob) -> None: ...
    async def get_job(self, project: str | None, job_id: str) -> PredictionJob: ...
    async def list_jobs(self, project: str, *, limit: int, after: str | None) -> Page: ...
    async def claim_job(
        self,
        owner: str,
        now: datetime,
        lease_seconds: float,
        models: Sequence[str],
        job_id: str | None = None,
        among: Sequence[str] | None = None,
    ) -> PredictionJob | None: ...

    async def hold_job(
        self, job_id: str, owner: str, now: datetime, lease_seconds: float
    ) -> bool: ...
    async def recorded_chunks(self, job_id: str) -> set[int]: ...
    async def predicted_keys(self, job: PredictionJob) -> frozenset[str]:
        """The keys the job's recorded chunks predicted."""
        ...

    async def record_chunk(
        self, job: PredictionJob, owner: str, chunk: Chunk, now: datetime, lease_seconds: float
    ) -> bool: ...
    async def end_job(
        self,
        job: PredictionJob,
        owner: str,
        status: JobStatus,
        now: datetime,
        *,
        total_rows: int | None = None,
        result: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> bool: ...
    async def cancel_job(self, project: str, job_id: str, now: datetime) -> PredictionJob: ...
    async def precomputed(self, model: str, key: str) -> Precomputed | None: ...
    async def precomputed_many(self, model: str, keys: Sequence[str]) -> dict[str, Precomputed]: ...


class ScheduleStore(Protocol):
    """Schedules of dataset jobs (store/schedules.py)."""

    async def add_schedule(self, schedule: Schedule) -> None: ...
    async def get_schedule(self, project: str | None, schedule_id: str) -> Schedule: ...
    async def list_schedules(self, project: str, *, limit: int, after: str | None) -> Page: ...
    async def delete_schedule(self, project: str, schedule_id: str) -> None: ...
    async def due_schedules(self, now: datetime) -> list[Schedule]: ...
    async def start_runs(
        self, schedule: Schedule, next_run_at: datetime, jobs: Sequence[PredictionJob]
    ) -> bool:
        """Record the due runs and move the schedule on, if no one else did: one step."""
        ...

    async def schedule_runs(self, schedule_id: str, limit: int) -> list[PredictionJob]:
        """The schedule's runs (jobs, missed ones too), newest first."""
        ...


class Store(
    Lifecycle,
    FileStore,
    BatchStore,
    IntakeStore,
    WorkerStore,
    MonitorStore,
    FinalizerStore,
    OutboxStore,
    KeyStore,
    CapacityStore,
    PoolHistoryStore,
    ReportStore,
    CallStore,
    EndpointStore,
    SessionStore,
    PredictionStore,
    ScheduleStore,
    Protocol,
):
    """Everything durable: what a backend implements."""


__all__ = [
    "BatchStore",
    "CallStore",
    "CapacityStore",
    "EndpointStore",
    "FileStore",
    "FinalizerStore",
    "IntakeStore",
    "KeyStore",
    "Lifecycle",
    "MonitorStore",
    "OutboxStore",
    "PoolHistoryStore",
    "PredictionStore",
    "ReportStore",
    "ScheduleStore",
    "SessionStore",
    "Store",
    "WorkerStore",
]
