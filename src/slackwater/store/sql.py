"""SqlStore: the Store port on SQLAlchemy Core, for SQLite (embedded) and PostgreSQL.

SQLite runs in WAL mode and opens every transaction with BEGIN IMMEDIATE, so that
concurrent writers (several worker processes) queue on busy_timeout instead of failing
on lock upgrades. PostgreSQL leases with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.resources import files as package_files
from typing import Any, cast

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    and_,
    any_,
    bindparam,
    delete,
    event,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from slackwater.domain.batch import (
    STATUS_TIMESTAMP,
    Batch,
    BatchStatus,
    LineError,
    RequestCounts,
    check_transition,
)
from slackwater.domain.errors import ConfigError, NotFound
from slackwater.domain.files import FileObject
from slackwater.domain.ids import new_id
from slackwater.domain.money import from_nano, to_nano
from slackwater.domain.request import Request, RequestStatus, Result
from slackwater.ports import (
    LEDGER_GROUPS,
    CachedResult,
    Delivery,
    Escalation,
    FinishedRequest,
    Lease,
    LedgerEntry,
    LedgerRow,
    OpenWork,
    Page,
    Retry,
    StagedRequest,
)
from slackwater.store.schema import (
    UtcDateTime,
    api_keys,
    batches,
    files,
    model_outcomes,
    projects,
    requests,
    result_cache,
    scheduler_state,
    webhook_deliveries,
    workers,
)

URGENCY_STEP_SECONDS = 300  # deadlines within 5 minutes of each other share the queue fairly
OPEN = (RequestStatus.PENDING.value, RequestStatus.LEASED.value, RequestStatus.RETRYING.value)
UNSTARTED = (RequestStatus.PENDING.value, RequestStatus.STAGED.value, RequestStatus.RETRYING.value)
EVENTS = {
    BatchStatus.COMPLETED: "batch.completed",
    BatchStatus.FAILED: "batch.failed",
    BatchStatus.EXPIRED: "batch.expired",
    BatchStatus.CANCELLED: "batch.cancelled",
}


def status_is(status: RequestStatus) -> ColumnElement[bool]:
    """`status = '<literal>'`: a bound parameter would hide the partial indexes."""
    return requests.c.status == literal_column(f"'{status.value}'")


def urgency(deadline: datetime) -> int:
    return int(deadline.timestamp()) // URGENCY_STEP_SECONDS


_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def async_url(url: str) -> str:
    """Accept plain `sqlite:///…` and `postgresql://…` URLs and pick the async driver."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"database_url {url!r} is not a URL like sqlite:///path or postgresql://…"
        )
    if "+" in scheme:
        return url
    if scheme not in _DRIVERS:
        raise ConfigError(f"database_url scheme {scheme!r} is not supported (sqlite, postgresql)")
    return f"{_DRIVERS[scheme]}://{rest}"


READ_ONLY = "slackwater_read_only"  # an execution option: the transaction only reads

# The columns `stage_requests` writes, in the order of its records.
_STAGED_COLUMNS = (
    "batch_id", "line", "custom_id", "model", "endpoint", "body", "status", "deadline",
    "attempts", "project", "urgency", "fair_rank", "cache_key", "route",
)  # fmt: skip


def _sqlite_setup(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "busy_timeout=60000",
            "synchronous=NORMAL",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Writers take the lock up front (no deadlock upgrading a read lock); readers
        # need none: in WAL mode they see the last commit while one writer works.
        reading = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


_REQUEST_STATUS = {status.value: status for status in RequestStatus}


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _file(row: Row[Any]) -> FileObject:
    return FileObject(**row._mapping)


def _batch(row: Row[Any]) -> Batch:
    errors = [LineError(**e) for e in json.loads(row.errors)] if row.errors else []
    return Batch(
        id=row.id,
        project=row.project,
        endpoint=row.endpoint,
        input_file_id=row.input_file_id,
        completion_window=row.completion_window,
        status=BatchStatus(row.status),
        outcome=BatchStatus(row.outcome) if row.outcome else None,
        created_at=row.created_at,
        expires_at=row.expires_at,
        metadata=json.loads(row.metadata) if row.metadata else None,
        output_file_id=row.output_file_id,
        error_file_id=row.error_file_id,
        errors=errors,
        request_counts=RequestCounts(row.total, row.completed, row.failed),
        retried_from=row.retried_from,
        cost=from_nano(row.cost_nano),
        realtime_cost=from_nano(row.realtime_nano),
        **{column: getattr(row, column) for column in STATUS_TIMESTAMP.values()},
    )


class SqlStore:
    def __init__(self, url: str, *, echo: bool = False, webhooks: bool = False) -> None:
        self.url = async_url(url)
        self.webhooks = webhooks
        self.dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        if self.dialect == "sqlite":
            # aiosqlite runs each connection on its own thread: keep a few open rather
            # than paying a thread and a connection per transaction.
            self.engine = create_async_engine(self.url, echo=echo, pool_size=4, max_overflow=4)
            _sqlite_setup(self.engine)
        else:
            self.engine = create_async_engine(
                self.url, echo=echo, pool_size=8, max_overflow=8, pool_pre_ping=True
            )
        self._skip_locked = self.dialect == "postgresql"
        # The dialect's own processor: on SQLite the very text SQLAlchemy writes elsewhere,
        # so bulk-written timestamps compare equal to ORM-written ones.
        dialect = self.engine.dialect
        processor = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
        self._time: Any = processor or (lambda value: value)

    def _among(self, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
        """`column IN ids` as one bound value: SQLAlchemy would bind (and name) each id."""
        if self.dialect == "sqlite":
            listed = func.json_each(bindparam(None, orjson.dumps(list(ids)).decode()))
            return cast(
                ColumnElement[bool], column.in_(select(listed.table_valued("value").c.value))
            )
        return cast(
            ColumnElement[bool], column == any_(bindparam(None, list(ids), ARRAY(BigInteger)))
        )

    def _sql(self, text: str) -> str:
        """Driver SQL from `?` placeholders (bulk paths skip SQLAlchemy's per-row work)."""
        if self.engine.dialect.paramstyle == "qmark":
            return text
        parts = text.split("?")
        return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))

    # -- lifecycle ---------------------------------------------------------------------

    async def migrate(self) -> None:
        def upgrade(connection: Connection) -> None:
            config = Config()
            config.set_main_option(
                "script_location", str(package_files("slackwater.store") / "migrations")
            )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Several processes may start at once: migrate one at a time.
                await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
            await conn.run_sync(upgrade)

    async def close(self) -> None:
        await self.engine.dispose()

    # -- files -------------------------------------------------------------------------

    async def add_file(self, file: FileObject) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(insert(files).values(**asdict(file)))

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that only reads: it does not wait for a writer (SQLite)."""
        async with self.engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
            async with conn.begin():
                yield conn

    async def _any_request(self, *where: ColumnElement[bool]) -> bool:
        """Whether a request matches, looked up without the write lock.

        Idle workers and the monitor ask often; asking first keeps them from stalling
        the writers (an intake, busy workers) while there is nothing to do.
        """
        async with self._reading() as conn:
            found = await conn.execute(select(requests.c.id).where(*where).limit(1))
            return found.first() is not None

    async def get_file(self, project: str | None, file_id: str) -> FileObject:
        query = select(files).where(files.c.id == file_id)
        if project is not None:
            query = query.where(files.c.project == project)
        async with self._reading() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"No such File object: {file_id}", param="file_id")
        return _file(row)

    async def list_files(
        self, project: str, *, purpose: str | None, limit: int, after: str | None
    ) -> Page:
        query = select(files).where(files.c.project == project)
        if purpose:
            query = query.where(files.c.purpose == purpose)
        if after:
            query = query.where(files.c.id < after)
        query = query.order_by(files.c.id.desc()).limit(limit + 1)
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        return Page([_file(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def delete_file(self, project: str, file_id: str) -> FileObject:
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    select(files).where(files.c.id == file_id, files.c.project == project)
                )
            ).first()
            if row is None:
                raise NotFound(f"No such File object: {file_id}", param="file_id")
            await conn.execute(delete(files).where(files.c.id == file_id))
        return _file(row)

    # -- batches -----------------------------------------------------------------------

    async def add_batch(self, batch: Batch, idempotency_key: str | None = None) -> Batch:
        """Store a new batch; with an idempotency key already used, the first batch."""
        values = {
            "id": batch.id,
            "project": batch.project,
            "endpoint": batch.endpoint,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": batch.status.value,
            "metadata": _dumps(batch.metadata),
            "total": 0,
            "completed": 0,
            "failed": 0,
            "created_at": batch.created_at,
            "expires_at": batch.expires_at,
            "idempotency_key": idempotency_key,
            "retried_from": batch.retried_from,
        }
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(batches).values(**values))
                return await self._get_batch(conn, None, batch.id)
        except IntegrityError:
            if idempotency_key is None:
                raise
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    select(batches).where(
                        batches.c.project == batch.project,
                        batches.c.idempotency_key == idempotency_key,
                    )
                )
            ).first()
        if row is None:  # pragma: no cover - the conflicting row was deleted meanwhile
            raise NotFound(f"no batch for idempotency key {idempotency_key}")
        return _batch(row)

    async def get_batch(self, project: str | None, batch_id: str) -> Batch:
        async with self._reading() as conn:
            return await self._get_batch(conn, project, batch_id)

    async def _get_batch(
        self, conn: AsyncConnection, project: str | None, batch_id: str, *, lock: bool = False
    ) -> Batch:
        query = select(batches).where(batches.c.id == batch_id)
        if project is not None:
            query = query.where(batches.c.project == project)
        if lock and self._skip_locked:
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"No such Batch object: {batch_id}", param="batch_id")
        return _batch(row)

    async def list_batches(self, project: str, *, limit: int, after: str | None) -> Page:
        query = select(batches).where(batches.c.project == project)
        if after:
            query = query.where(batches.c.id < after)
        query = query.order_by(batches.c.id.desc()).limit(limit + 1)
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        return Page([_batch(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def batch_ids_in(self, status: BatchStatus, *, settled: bool = False) -> list[str]:
        query = (
            select(batches.c.id)
            .where(batches.c.status == status.value)
            .order_by(batches.c.expires_at)
        )
        if settled:
            query = query.where(batches.c.completed + batches.c.failed >= batches.c.total)
        async with self._reading() as conn:
            return list((await conn.execute(query)).scalars())

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
        async with self.engine.begin() as conn:
            batch = await self._get_batch(conn, None, batch_id, lock=True)
            check_transition(batch_id, batch.status, new)
            values: dict[str, Any] = {"status": new.value, STATUS_TIMESTAMP[new]: now}
            if errors:
                values["errors"] = json.dumps([e.__dict__ for e in errors])
            if outcome is not None:
                values["outcome"] = outcome.value
            if output_file_id is not None:
                values["output_file_id"] = output_file_id
            if error_file_id is not None:
                values["error_file_id"] = error_file_id
            await conn.execute(update(batches).where(batches.c.id == batch_id).values(**values))
            if new in (BatchStatus.CANCELLING, BatchStatus.FAILED):
                # Nothing not yet started will run now.
                await self._close_unstarted(conn, batch_id, RequestStatus.CANCELLED, now)
            moved = await self._get_batch(conn, None, batch_id)
            if self.webhooks and new in EVENTS:
                await conn.execute(
                    insert(webhook_deliveries).values(
                        batch_id=batch_id,
                        event=EVENTS[new],
                        payload=json.dumps({"type": EVENTS[new], "batch_id": batch_id}),
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
            return moved

    # -- requests ----------------------------------------------------------------------

    async def claim_intake(self, batch_id: str, owner: str, now: datetime, seconds: float) -> bool:
        """Take (or renew) the right to validate a batch; False if another process holds it."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(batches)
                .where(
                    batches.c.id == batch_id,
                    batches.c.status == BatchStatus.VALIDATING.value,
                    or_(
                        batches.c.intake_owner.is_(None),
                        batches.c.intake_owner == owner,
                        batches.c.intake_until < now,
                    ),
                )
                .values(intake_owner=owner, intake_until=now + timedelta(seconds=seconds))
            )
            return bool(result.rowcount)

    async def stage_requests(self, batch: Batch, rows: Sequence[StagedRequest]) -> None:
        if not rows:
            return
        deadline = self._time(batch.expires_at)
        rank = urgency(batch.expires_at)
        staged = RequestStatus.STAGED.value
        records = [
            (
                batch.id,
                r.line,
                r.custom_id,
                r.model,
                batch.endpoint,
                r.body,
                staged,
                deadline,
                0,
                batch.project,
                rank,
                0,
                r.cache_key,
                r.route,
            )
            for r in rows
        ]
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # COPY: about 3x an INSERT per row on PostgreSQL. The chunk is one
                # statement, so it is written whole or not at all.
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                await driver.copy_records_to_table(
                    "requests", records=records, columns=_STAGED_COLUMNS
                )
                return
            await self._executemany(
                conn,
                f"INSERT INTO requests ({', '.join(_STAGED_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_STAGED_COLUMNS))})",
                records,
            )

    async def _executemany(
        self, conn: AsyncConnection, sql: str, rows: list[tuple[Any, ...]]
    ) -> None:
        await conn.exec_driver_sql(self._sql(sql), rows)

    async def drop_staged(self, batch_id: str) -> None:
        staged = (requests.c.batch_id == batch_id, status_is(RequestStatus.STAGED))
        if not await self._any_request(*staged):
            return  # the usual case: an intake starting on a new batch
        async with self.engine.begin() as conn:
            await conn.execute(delete(requests).where(*staged))

    async def activate(self, batch_id: str, now: datetime) -> Batch:
        """Make a validated batch's requests runnable and move it to in_progress."""
        async with self.engine.begin() as conn:
            batch = await self._get_batch(conn, None, batch_id, lock=True)
            check_transition(batch_id, batch.status, BatchStatus.IN_PROGRESS)
            # Start-time fair queuing: a project's requests are numbered on from where its
            # last batch ended, or from the queue's current position if it has been idle,
            # so every project's work interleaves with every other's.
            last_line = (
                await conn.execute(
                    select(func.max(requests.c.line)).where(
                        requests.c.batch_id == batch_id,
                        requests.c.status == RequestStatus.STAGED.value,
                    )
                )
            ).scalar() or 0
            start = max(
                await self._counter(conn, projects, batch.project),
                await self._counter(conn, scheduler_state, "virtual_time"),
            )
            await self._set_counter(conn, projects, batch.project, start + last_line + 1)
            result = await conn.execute(
                update(requests)
                .where(
                    requests.c.batch_id == batch_id,
                    requests.c.status == RequestStatus.STAGED.value,
                )
                .values(status=RequestStatus.PENDING.value, fair_rank=requests.c.line + start)
            )
            await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(
                    status=BatchStatus.IN_PROGRESS.value,
                    in_progress_at=now,
                    total=result.rowcount,
                )
            )
            return await self._get_batch(conn, None, batch_id)

    async def lease(
        self,
        owner: str,
        models: Sequence[str],
        limit: int,
        now: datetime,
        seconds: float,
        batches: Sequence[str] | None = None,
    ) -> Lease | None:
        if not models or (batches is not None and not batches):
            return None
        pending: ColumnElement[bool] = status_is(RequestStatus.PENDING)
        if batches is not None:
            pending = and_(pending, requests.c.batch_id.in_(batches))
        order = (requests.c.urgency, requests.c.fair_rank, requests.c.id)
        if not await self._any_request(pending, requests.c.model.in_(models)):
            return None
        async with self.engine.begin() as conn:
            # The most urgent (then the fairest) head among the models asked for.
            heads = []
            for name in models:
                head = (
                    await conn.execute(
                        select(requests.c.urgency, requests.c.fair_rank)
                        .where(pending, requests.c.model == name)
                        .order_by(*order)
                        .limit(1)
                    )
                ).first()
                if head is not None:
                    heads.append((head.urgency, head.fair_rank, name))
            if not heads:
                return None
            model = min(heads)[2]
            pick = (
                select(requests.c.id, requests.c.fair_rank)
                .where(pending, requests.c.model == model)
                .order_by(*order)
                .limit(limit)
            )
            if self._skip_locked:
                pick = pick.with_for_update(skip_locked=True)
            picked = (await conn.execute(pick)).all()
            if not picked:
                return None
            ids = [row.id for row in picked]
            reached = max(row.fair_rank for row in picked)
            if reached > await self._counter(conn, scheduler_state, "virtual_time"):
                await self._set_counter(conn, scheduler_state, "virtual_time", reached)
            lease_id = new_id("lease")
            expires_at = now + timedelta(seconds=seconds)
            # One statement takes the rows and returns them (RETURNING: SQLite 3.35+).
            taken = (
                await conn.execute(
                    update(requests)
                    .where(self._among(requests.c.id, ids))
                    .values(
                        status=RequestStatus.LEASED.value,
                        lease_id=lease_id,
                        lease_expires_at=expires_at,
                        attempts=requests.c.attempts + 1,
                    )
                    .returning(
                        requests.c.id,
                        requests.c.batch_id,
                        requests.c.custom_id,
                        requests.c.model,
                        requests.c.endpoint,
                        requests.c.body,
                        requests.c.attempts,
                        requests.c.cache_key,
                        requests.c.route,
                    )
                )
            ).all()
        place = {request_id: i for i, request_id in enumerate(ids)}
        rows = sorted(taken, key=lambda row: place[row[0]])  # RETURNING has no order
        return Lease(
            id=lease_id,
            model=model,
            expires_at=expires_at,
            # Rows unpacked as tuples: named access costs more than the rest of the loop.
            requests=[
                Request(
                    id=id_,
                    batch_id=batch,
                    custom_id=custom_id,
                    model=name,
                    endpoint=endpoint,
                    body=orjson.loads(body),
                    attempts=tries,
                    cache_key=key,
                    route=route,
                )
                for id_, batch, custom_id, name, endpoint, body, tries, key, route in rows
            ],
        )

    async def heartbeat(self, lease_id: str, now: datetime, seconds: float) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(requests)
                .where(
                    requests.c.lease_id == lease_id,
                    status_is(RequestStatus.LEASED),
                )
                .values(lease_expires_at=now + timedelta(seconds=seconds))
            )
            return int(result.rowcount)

    async def record(
        self,
        lease_id: str,
        results: Sequence[Result],
        now: datetime,
        cache_until: datetime | None = None,
    ) -> int:
        """Store outcomes for requests this lease still holds; drop the rest.

        Idempotent: a request whose lease expired (and may be running elsewhere) or whose
        result is already stored is not written again.
        """
        if not results:
            return 0
        by_id = {r.request_id: r for r in results}
        async with self.engine.begin() as conn:
            rows = await self._held(
                conn, lease_id, list(by_id), requests.c.batch_id, requests.c.cache_key
            )
            if not rows:
                return 0
            counts: dict[str, list[int]] = {}
            params = []
            cache: dict[str, dict[str, Any]] = {}
            finished = self._time(now)
            held = cast(list[tuple[int, str, str | None]], rows)
            for request_id, batch_id, key in held:  # unpacked: faster than by name
                result = by_id[request_id]
                outcome = result.outcome
                if cache_until is not None and key and outcome.ok:
                    cache[key] = {
                        "key": key,
                        "status_code": outcome.status_code,
                        "response": orjson.dumps(outcome.body).decode(),
                        "expires_at": cache_until,
                    }
                charge = result.charge
                cost = to_nano(charge.cost) if charge else None
                realtime = to_nano(charge.realtime_cost) if charge else None
                params.append(
                    (
                        (RequestStatus.SUCCEEDED if outcome.ok else RequestStatus.FAILED).value,
                        outcome.status_code,
                        orjson.dumps(outcome.body).decode(),
                        finished,
                        charge.pool if charge else None,
                        charge.engine if charge else None,
                        charge.price if charge else None,
                        outcome.usage.prompt_tokens,
                        outcome.usage.completion_tokens,
                        round(charge.compute_seconds * 1_000_000) if charge else None,
                        cost,
                        realtime,
                        request_id,
                    )
                )
                done = counts.setdefault(batch_id, [0, 0, 0, 0])
                done[0 if outcome.ok else 1] += 1
                done[2] += cost or 0
                done[3] += realtime or 0
            await self._executemany(
                conn,
                "UPDATE requests SET status = ?, status_code = ?, response = ?, "
                "finished_at = ?, pool = ?, engine = ?, price = ?, "
                "prompt_tokens = ?, completion_tokens = ?, "
                "compute_us = COALESCE(compute_us, 0) + ?, cost_nano = COALESCE(cost_nano, 0) + ?, "
                "realtime_nano = ?, "
                "lease_id = NULL, lease_expires_at = NULL WHERE id = ?",
                params,
            )
            if cache:
                upsert = (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(
                    result_cache
                )
                await conn.execute(
                    upsert.on_conflict_do_update(
                        index_elements=["key"],
                        set_={
                            "status_code": upsert.excluded.status_code,
                            "response": upsert.excluded.response,
                            "expires_at": upsert.excluded.expires_at,
                        },
                    ),
                    list(cache.values()),
                )
            for batch_id, (completed, failed, cost_nano, realtime_nano) in counts.items():
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id)
                    .values(
                        completed=batches.c.completed + completed,
                        failed=batches.c.failed + failed,
                        cost_nano=batches.c.cost_nano + cost_nano,
                        realtime_nano=batches.c.realtime_nano + realtime_nano,
                    )
                )
            return len(rows)

    async def open_work(self) -> list[OpenWork]:
        query = (
            select(
                requests.c.batch_id,
                requests.c.model,
                func.count().label("n"),
                func.min(requests.c.deadline).label("deadline"),
            )
            .where(requests.c.status.in_(OPEN))
            .group_by(requests.c.batch_id, requests.c.model)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [OpenWork(r.batch_id, r.model, r.n, r.deadline) for r in rows]

    async def worker_seen(self, owner: str, pool: str, kind: str, now: datetime) -> None:
        insert = (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(workers)
        row = {"owner": owner, "pool": pool, "kind": kind, "seen_at": now}
        async with self.engine.begin() as conn:
            await conn.execute(
                insert.values(**row).on_conflict_do_update(
                    index_elements=["owner"], set_={"seen_at": now}
                )
            )

    async def worker_gone(self, owner: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(workers).where(workers.c.owner == owner))

    async def live_workers(self, kind: str, since: datetime) -> int:
        query = select(func.count()).where(workers.c.kind == kind, workers.c.seen_at >= since)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def ledger(
        self, by: str, project: str | None = None, since: datetime | None = None
    ) -> list[LedgerRow]:
        if by == "day":
            finished = requests.c.finished_at
            key: Any = (
                func.date(finished)
                if self.dialect == "sqlite"
                else func.to_char(func.timezone("UTC", finished), "YYYY-MM-DD")
            )
        elif by in LEDGER_GROUPS:
            key = requests.c[LEDGER_GROUPS[by]]
        else:
            raise ValueError(f"cannot group the ledger by {by!r}")
        query = (
            select(
                key.label("key"),
                func.count().label("requests"),
                func.sum(requests.c.prompt_tokens).label("prompt_tokens"),
                func.sum(requests.c.completion_tokens).label("completion_tokens"),
                func.sum(requests.c.compute_us).label("compute_us"),
                func.sum(requests.c.cost_nano).label("cost_nano"),
                func.sum(requests.c.realtime_nano).label("realtime_nano"),
            )
            .where(requests.c.cost_nano.is_not(None))
            .group_by(key)
            .order_by(key)
        )
        if project is not None:
            query = query.where(requests.c.project == project)
        if since is not None:
            query = query.where(requests.c.finished_at >= since)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            LedgerRow(
                key=str(row.key),
                requests=row.requests,
                prompt_tokens=int(row.prompt_tokens or 0),
                completion_tokens=int(row.completion_tokens or 0),
                compute_seconds=int(row.compute_us or 0) / 1_000_000,
                cost=from_nano(int(row.cost_nano or 0)),
                realtime_cost=from_nano(int(row.realtime_nano or 0)),
            )
            for row in rows
        ]

    async def ledger_entries(self, batch_id: str, limit: int) -> list[LedgerEntry]:
        query = (
            select(
                requests.c.custom_id,
                requests.c.model,
                requests.c.engine,
                requests.c.pool,
                requests.c.prompt_tokens,
                requests.c.completion_tokens,
                requests.c.compute_us,
                requests.c.price,
                requests.c.cost_nano,
                requests.c.realtime_nano,
            )
            .where(requests.c.batch_id == batch_id, requests.c.cost_nano.is_not(None))
            .order_by(requests.c.line)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            LedgerEntry(
                custom_id=r.custom_id,
                model=r.model,
                engine=r.engine,
                pool=r.pool,
                prompt_tokens=int(r.prompt_tokens or 0),
                completion_tokens=int(r.completion_tokens or 0),
                compute_seconds=int(r.compute_us or 0) / 1_000_000,
                price=r.price,
                cost=from_nano(int(r.cost_nano or 0)),
                realtime_cost=from_nano(int(r.realtime_nano or 0)),
            )
            for r in rows
        ]

    async def batch_outcomes(self, project: str | None = None) -> dict[str, int]:
        query = select(batches.c.status, func.count()).group_by(batches.c.status)
        if project is not None:
            query = query.where(batches.c.project == project)
        async with self.engine.connect() as conn:
            return {status: n for status, n in (await conn.execute(query)).all()}

    async def _held(
        self, conn: AsyncConnection, lease_id: str, ids: list[int], *columns: Any
    ) -> list[Row[Any]]:
        """The rows among `ids` that this lease still holds (locked on PostgreSQL)."""
        query = select(requests.c.id, *columns).where(
            requests.c.lease_id == lease_id,
            status_is(RequestStatus.LEASED),
            self._among(requests.c.id, ids),
        )
        if self._skip_locked:
            query = query.with_for_update()
        return list((await conn.execute(query)).all())

    async def retry(self, lease_id: str, retries: Sequence[Retry]) -> int:
        """Put requests this lease holds aside until their `not_before`."""
        if not retries:
            return 0
        async with self.engine.begin() as conn:
            held = await self._held(
                conn, lease_id, [r.request_id for r in retries], requests.c.batch_id
            )
            if not held:
                return 0
            batch_of = {row.id: row.batch_id for row in held}
            chosen = [r for r in retries if r.request_id in batch_of]
            await self._executemany(
                conn,
                "UPDATE requests SET status = 'retrying', not_before = ?, lease_id = NULL, "
                "lease_expires_at = NULL, cost_nano = COALESCE(cost_nano, 0) + ? WHERE id = ?",
                [(self._time(r.not_before), to_nano(r.cost), r.request_id) for r in chosen],
            )
            await self._charge_batches(conn, [(batch_of[r.request_id], r.cost) for r in chosen])
            return len(batch_of)

    async def _charge_batches(
        self, conn: AsyncConnection, costs: Sequence[tuple[str, Decimal]]
    ) -> None:
        """Add what failed attempts cost to their batches' totals."""
        totals: dict[str, int] = {}
        for batch_id, cost in costs:
            totals[batch_id] = totals.get(batch_id, 0) + to_nano(cost)
        for batch_id, nano in totals.items():
            if nano:
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id)
                    .values(cost_nano=batches.c.cost_nano + nano)
                )

    async def escalate(self, lease_id: str, escalations: Sequence[Escalation]) -> int:
        """Send requests this lease holds back to the queue on another model."""
        if not escalations:
            return 0
        async with self.engine.begin() as conn:
            held = await self._held(
                conn, lease_id, [e.request_id for e in escalations], requests.c.batch_id
            )
            if not held:
                return 0
            batch_of = {row.id: row.batch_id for row in held}
            chosen = [e for e in escalations if e.request_id in batch_of]
            await self._executemany(
                conn,
                "UPDATE requests SET model = ?, body = ?, route = ?, cache_key = NULL, "
                "status = 'pending', lease_id = NULL, lease_expires_at = NULL, "
                "cost_nano = COALESCE(cost_nano, 0) + ? WHERE id = ?",
                [
                    (e.model, e.body.decode(), e.route.decode(), to_nano(e.cost), e.request_id)
                    for e in chosen
                ],
            )
            await self._charge_batches(conn, [(batch_of[e.request_id], e.cost) for e in chosen])
            return len(batch_of)

    async def add_outcomes(self, counts: Mapping[tuple[str, str], tuple[int, int]]) -> None:
        """Add check results: (model, task) -> (passed, failed)."""
        if not counts:
            return
        upsert = (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(model_outcomes)
        async with self.engine.begin() as conn:
            for (model, task), (passed, failed) in sorted(counts.items()):
                await conn.execute(
                    upsert.values(
                        model=model, task=task, passed=passed, failed=failed
                    ).on_conflict_do_update(
                        index_elements=["model", "task"],
                        set_={
                            "passed": model_outcomes.c.passed + passed,
                            "failed": model_outcomes.c.failed + failed,
                        },
                    )
                )

    async def outcomes(self) -> dict[tuple[str, str], tuple[int, int]]:
        async with self._reading() as conn:
            rows = (await conn.execute(select(model_outcomes))).all()
        return {(r.model, r.task): (int(r.passed), int(r.failed)) for r in rows}

    async def promote_retries(self, now: datetime) -> int:
        due = (status_is(RequestStatus.RETRYING), requests.c.not_before <= now)
        if not await self._any_request(*due):
            return 0
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(requests)
                .where(*due)
                .values(status=RequestStatus.PENDING.value, not_before=None)
            )
            return int(result.rowcount)

    async def cached(self, keys: Sequence[str], now: datetime) -> dict[str, CachedResult]:
        if not keys:
            return {}
        async with self._reading() as conn:
            rows = (
                await conn.execute(
                    select(result_cache).where(
                        result_cache.c.key.in_(list(set(keys))), result_cache.c.expires_at > now
                    )
                )
            ).all()
        return {r.key: CachedResult(r.status_code, r.response.encode()) for r in rows}

    async def open_requests(self, project: str) -> int:
        """Requests of the project's batches that are queued, validating or running."""
        running = select(
            func.coalesce(func.sum(batches.c.total - batches.c.completed - batches.c.failed), 0)
        ).where(
            batches.c.project == project,
            batches.c.status.in_([BatchStatus.IN_PROGRESS.value, BatchStatus.CANCELLING.value]),
        )
        validating = (
            select(func.coalesce(func.sum(files.c.lines), 0))
            .select_from(batches.join(files, files.c.id == batches.c.input_file_id))
            .where(
                batches.c.project == project,
                batches.c.status == BatchStatus.VALIDATING.value,
            )
        )
        async with self.engine.begin() as conn:
            return int((await conn.execute(running)).scalar_one()) + int(
                (await conn.execute(validating)).scalar_one()
            )

    async def queue_depth(self) -> dict[tuple[str, str], int]:
        """Requests not finished, per (model, status)."""
        query = (
            select(requests.c.model, requests.c.status, func.count())
            .where(requests.c.status.in_(OPEN))
            .group_by(requests.c.model, requests.c.status)
        )
        async with self._reading() as conn:
            return {(m, s): int(n) for m, s, n in (await conn.execute(query)).all()}

    async def stored_bytes(self, project: str) -> int:
        async with self._reading() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.coalesce(func.sum(files.c.bytes), 0)).where(
                            files.c.project == project
                        )
                    )
                ).scalar_one()
            )

    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        async with self._reading() as conn:
            rows = (
                await conn.execute(
                    select(webhook_deliveries)
                    .where(
                        webhook_deliveries.c.delivered_at.is_(None),
                        webhook_deliveries.c.next_attempt_at <= now,
                    )
                    .order_by(webhook_deliveries.c.next_attempt_at)
                    .limit(limit)
                )
            ).all()
        return [Delivery(r.id, r.batch_id, r.event, r.payload.encode(), r.attempts) for r in rows]

    async def delivered(self, delivery_id: int, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == delivery_id)
                .values(delivered_at=now, attempts=webhook_deliveries.c.attempts + 1)
            )

    async def delivery_failed(
        self, delivery_id: int, error: str, next_attempt_at: datetime | None
    ) -> None:
        """Note a failed attempt; with no next attempt the delivery is given up."""
        values: dict[str, Any] = {
            "attempts": webhook_deliveries.c.attempts + 1,
            "last_error": error[:2000],
        }
        if next_attempt_at is None:
            values["delivered_at"] = datetime.max.replace(tzinfo=UTC)
        else:
            values["next_attempt_at"] = next_attempt_at
        async with self.engine.begin() as conn:
            await conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == delivery_id)
                .values(**values)
            )

    async def _counter(self, conn: AsyncConnection, table: Any, name: str) -> int:
        key = table.c[table.primary_key.columns.keys()[0]]
        value_column = table.c.next_rank if table is projects else table.c.value
        value = (await conn.execute(select(value_column).where(key == name))).scalar()
        return int(value or 0)

    async def _set_counter(self, conn: AsyncConnection, table: Any, name: str, value: int) -> None:
        key_name = table.primary_key.columns.keys()[0]
        value_name = "next_rank" if table is projects else "value"
        upsert = (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)
        await conn.execute(
            upsert.values({key_name: name, value_name: value}).on_conflict_do_update(
                index_elements=[key_name], set_={value_name: value}
            )
        )

    async def release(self, lease_id: str) -> int:
        """Give a lease's unfinished requests back to the queue (drain, shutdown)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(requests)
                .where(
                    requests.c.lease_id == lease_id,
                    status_is(RequestStatus.LEASED),
                )
                .values(
                    status=RequestStatus.PENDING.value,
                    lease_id=None,
                    lease_expires_at=None,
                    attempts=requests.c.attempts - 1,
                )
            )
            return int(result.rowcount)

    async def reap_leases(self, now: datetime) -> int:
        """Return requests whose lease ran out (a dead or stuck worker) to the queue."""
        expired = (status_is(RequestStatus.LEASED), requests.c.lease_expires_at < now)
        if not await self._any_request(*expired):
            return 0
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(requests)
                .where(*expired)
                .values(status=RequestStatus.PENDING.value, lease_id=None, lease_expires_at=None)
            )
            return int(result.rowcount)

    async def close_unstarted(self, batch_id: str, status: RequestStatus) -> int:
        async with self.engine.begin() as conn:
            return await self._close_unstarted(conn, batch_id, status, None)

    async def _close_unstarted(
        self,
        conn: AsyncConnection,
        batch_id: str,
        status: RequestStatus,
        now: datetime | None,
    ) -> int:
        result = await conn.execute(
            update(requests)
            .where(
                requests.c.batch_id == batch_id,
                requests.c.status.in_([RequestStatus.PENDING.value, RequestStatus.STAGED.value]),
            )
            .values(status=status.value, finished_at=now)
        )
        return int(result.rowcount)

    async def count_open(self, batch_id: str) -> int:
        """Requests of the batch that are queued or running."""
        async with self._reading() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).where(
                            requests.c.batch_id == batch_id,
                            requests.c.status.in_(OPEN),
                        )
                    )
                ).scalar_one()
            )

    async def finished(self, batch_id: str, chunk: int = 2000) -> AsyncIterator[FinishedRequest]:
        """Every request of the batch in input order, read in bounded chunks."""
        last = 0
        while True:
            query = (
                select(
                    requests.c.id,
                    requests.c.line,
                    requests.c.custom_id,
                    requests.c.status,
                    requests.c.status_code,
                    requests.c.response,
                    requests.c.route,
                )
                .where(and_(requests.c.batch_id == batch_id, requests.c.line > last))
                .order_by(requests.c.line)
                .limit(chunk)
            )
            async with self.engine.begin() as conn:
                rows = (await conn.execute(query)).all()
            for id_, line, custom_id, status, code, response, route in rows:
                yield FinishedRequest(
                    line,
                    custom_id,
                    _REQUEST_STATUS[status],
                    code,
                    response.encode() if response is not None else None,
                    f"req_{id_:016x}",
                    route.encode() if route is not None else None,
                )
            if len(rows) < chunk:
                return
            last = rows[-1].line

    # -- api keys ----------------------------------------------------------------------

    async def add_key(self, key_hash: str, project: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(api_keys).values(key_hash=key_hash, project=project, created_at=now)
            )

    async def project_for_key(self, key_hash: str) -> str | None:
        async with self._reading() as conn:
            return (
                await conn.execute(
                    select(api_keys.c.project).where(api_keys.c.key_hash == key_hash)
                )
            ).scalar()

    async def has_keys(self) -> bool:
        async with self._reading() as conn:
            return (await conn.execute(select(api_keys.c.key_hash).limit(1))).first() is not None
