"""SqlStore: the Store port on SQLAlchemy Core, for SQLite (embedded) and PostgreSQL.

SQLite runs in WAL mode and opens every transaction with BEGIN IMMEDIATE, so that
concurrent writers (several worker processes) queue on busy_timeout instead of failing
on lock upgrades. PostgreSQL leases with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from importlib.resources import files as package_files
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, and_, bindparam, delete, event, func, insert, select, update
from sqlalchemy.engine import Row
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
from slackwater.domain.request import Request, RequestStatus, Result
from slackwater.ports import FinishedRequest, Lease, Page, StagedRequest
from slackwater.store.schema import api_keys, batches, files, requests

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
            "temp_store=MEMORY",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _file(row: Row[Any]) -> FileObject:
    return FileObject(
        id=row.id,
        project=row.project,
        filename=row.filename,
        purpose=row.purpose,
        bytes=row.bytes,
        lines=row.lines,
        created_at=row.created_at,
    )


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
        **{column: getattr(row, column) for column in STATUS_TIMESTAMP.values()},
    )


class SqlStore:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = async_url(url)
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
            await conn.execute(
                insert(files).values(
                    id=file.id,
                    project=file.project,
                    filename=file.filename,
                    purpose=file.purpose,
                    bytes=file.bytes,
                    lines=file.lines,
                    created_at=file.created_at,
                )
            )

    async def get_file(self, project: str | None, file_id: str) -> FileObject:
        query = select(files).where(files.c.id == file_id)
        if project is not None:
            query = query.where(files.c.project == project)
        async with self.engine.begin() as conn:
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
        async with self.engine.begin() as conn:
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

    async def add_batch(self, batch: Batch) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(batches).values(
                    id=batch.id,
                    project=batch.project,
                    endpoint=batch.endpoint,
                    input_file_id=batch.input_file_id,
                    completion_window=batch.completion_window,
                    status=batch.status.value,
                    metadata=_dumps(batch.metadata),
                    total=0,
                    completed=0,
                    failed=0,
                    created_at=batch.created_at,
                    expires_at=batch.expires_at,
                )
            )

    async def get_batch(self, project: str | None, batch_id: str) -> Batch:
        async with self.engine.begin() as conn:
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
        async with self.engine.begin() as conn:
            rows = (await conn.execute(query)).all()
        return Page([_batch(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def batch_ids_in(self, status: BatchStatus) -> list[str]:
        query = (
            select(batches.c.id)
            .where(batches.c.status == status.value)
            .order_by(batches.c.expires_at)
        )
        async with self.engine.begin() as conn:
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
            return await self._get_batch(conn, None, batch_id)

    # -- requests ----------------------------------------------------------------------

    async def stage_requests(self, batch: Batch, rows: Sequence[StagedRequest]) -> None:
        if not rows:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(requests),
                [
                    {
                        "batch_id": batch.id,
                        "line": r.line,
                        "custom_id": r.custom_id,
                        "model": r.model,
                        "endpoint": batch.endpoint,
                        "body": r.body.decode(),
                        "status": RequestStatus.STAGED.value,
                        "deadline": batch.expires_at,
                        "attempts": 0,
                    }
                    for r in rows
                ],
            )

    async def drop_staged(self, batch_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(requests).where(
                    requests.c.batch_id == batch_id,
                    requests.c.status == RequestStatus.STAGED.value,
                )
            )

    async def activate(self, batch_id: str, now: datetime) -> Batch:
        """Make a validated batch's requests runnable and move it to in_progress."""
        async with self.engine.begin() as conn:
            batch = await self._get_batch(conn, None, batch_id, lock=True)
            check_transition(batch_id, batch.status, BatchStatus.IN_PROGRESS)
            result = await conn.execute(
                update(requests)
                .where(
                    requests.c.batch_id == batch_id,
                    requests.c.status == RequestStatus.STAGED.value,
                )
                .values(status=RequestStatus.PENDING.value)
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
        self, owner: str, models: Sequence[str], limit: int, now: datetime, seconds: float
    ) -> Lease | None:
        if not models:
            return None
        pending = requests.c.status == RequestStatus.PENDING.value
        async with self.engine.begin() as conn:
            # Earliest deadline first across batches: the model of the most urgent request.
            model = (
                await conn.execute(
                    select(requests.c.model)
                    .where(pending, requests.c.model.in_(models))
                    .order_by(requests.c.deadline, requests.c.id)
                    .limit(1)
                )
            ).scalar()
            if model is None:
                return None
            pick = (
                select(requests.c.id)
                .where(pending, requests.c.model == model)
                .order_by(requests.c.deadline, requests.c.id)
                .limit(limit)
            )
            if self._skip_locked:
                pick = pick.with_for_update(skip_locked=True)
            ids = list((await conn.execute(pick)).scalars())
            if not ids:
                return None
            lease_id = new_id("lease")
            expires_at = now + timedelta(seconds=seconds)
            await conn.execute(
                update(requests)
                .where(requests.c.id.in_(ids))
                .values(
                    status=RequestStatus.LEASED.value,
                    lease_id=lease_id,
                    lease_expires_at=expires_at,
                    attempts=requests.c.attempts + 1,
                )
            )
            rows = (
                await conn.execute(
                    select(
                        requests.c.id,
                        requests.c.batch_id,
                        requests.c.custom_id,
                        requests.c.model,
                        requests.c.endpoint,
                        requests.c.body,
                        requests.c.attempts,
                    )
                    .where(requests.c.id.in_(ids))
                    .order_by(requests.c.deadline, requests.c.id)
                )
            ).all()
        return Lease(
            id=lease_id,
            model=model,
            expires_at=expires_at,
            requests=[
                Request(
                    id=r.id,
                    batch_id=r.batch_id,
                    custom_id=r.custom_id,
                    model=r.model,
                    endpoint=r.endpoint,
                    body=json.loads(r.body),
                    attempts=r.attempts,
                )
                for r in rows
            ],
        )

    async def heartbeat(self, lease_id: str, now: datetime, seconds: float) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(requests)
                .where(
                    requests.c.lease_id == lease_id,
                    requests.c.status == RequestStatus.LEASED.value,
                )
                .values(lease_expires_at=now + timedelta(seconds=seconds))
            )
            return int(result.rowcount)

    async def record(self, lease_id: str, results: Sequence[Result], now: datetime) -> int:
        """Store outcomes for requests this lease still holds; drop the rest.

        Idempotent: a request whose lease expired (and may be running elsewhere) or whose
        result is already stored is not written again.
        """
        if not results:
            return 0
        by_id = {r.request_id: r for r in results}
        async with self.engine.begin() as conn:
            held = select(requests.c.id, requests.c.batch_id).where(
                requests.c.lease_id == lease_id,
                requests.c.status == RequestStatus.LEASED.value,
                requests.c.id.in_(list(by_id)),
            )
            if self._skip_locked:
                held = held.with_for_update()
            rows = (await conn.execute(held)).all()
            if not rows:
                return 0
            counts: dict[str, list[int]] = {}
            params = []
            for row in rows:
                outcome = by_id[row.id].outcome
                params.append(
                    {
                        "rid": row.id,
                        "status": (
                            RequestStatus.SUCCEEDED if outcome.ok else RequestStatus.FAILED
                        ).value,
                        "status_code": outcome.status_code,
                        "response": orjson.dumps(outcome.body).decode(),
                    }
                )
                done = counts.setdefault(row.batch_id, [0, 0])
                done[0 if outcome.ok else 1] += 1
            await conn.execute(
                update(requests)
                .where(requests.c.id == bindparam("rid"))
                .values(
                    status=bindparam("status"),
                    status_code=bindparam("status_code"),
                    response=bindparam("response"),
                    finished_at=now,
                    lease_id=None,
                    lease_expires_at=None,
                ),
                params,
            )
            for batch_id, (completed, failed) in counts.items():
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id)
                    .values(
                        completed=batches.c.completed + completed,
                        failed=batches.c.failed + failed,
                    )
                )
            return len(rows)

    async def release(self, lease_id: str) -> int:
        """Give a lease's unfinished requests back to the queue (drain, shutdown)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(requests)
                .where(
                    requests.c.lease_id == lease_id,
                    requests.c.status == RequestStatus.LEASED.value,
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
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(requests)
                .where(
                    requests.c.status == RequestStatus.LEASED.value,
                    requests.c.lease_expires_at < now,
                )
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
        async with self.engine.begin() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).where(
                            requests.c.batch_id == batch_id,
                            requests.c.status.in_(
                                [RequestStatus.PENDING.value, RequestStatus.LEASED.value]
                            ),
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
                )
                .where(and_(requests.c.batch_id == batch_id, requests.c.line > last))
                .order_by(requests.c.line)
                .limit(chunk)
            )
            async with self.engine.begin() as conn:
                rows = (await conn.execute(query)).all()
            for row in rows:
                yield FinishedRequest(
                    line=row.line,
                    custom_id=row.custom_id,
                    status=RequestStatus(row.status),
                    status_code=row.status_code,
                    response=row.response.encode() if row.response is not None else None,
                    request_id=f"req_{row.id:016x}",
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
        async with self.engine.begin() as conn:
            return (
                await conn.execute(
                    select(api_keys.c.project).where(api_keys.c.key_hash == key_hash)
                )
            ).scalar()

    async def has_keys(self) -> bool:
        async with self.engine.begin() as conn:
            return (await conn.execute(select(api_keys.c.key_hash).limit(1))).first() is not None
