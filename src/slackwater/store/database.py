"""Database: the engine, connections and SQL helpers every part of the SQL store shares.

SQLite runs in WAL mode; a transaction that writes opens with BEGIN IMMEDIATE, so that
concurrent writers (several worker processes) queue on busy_timeout instead of failing
on lock upgrades, and one that only reads (`reading()`) opens deferred and answers from
the last commit without waiting for a writer. PostgreSQL leases with FOR UPDATE SKIP
LOCKED. See docs/decisions/0002-sqlite-connections.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib.resources import files as package_files
from typing import Any, cast

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    Table,
    any_,
    bindparam,
    event,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from slackwater.domain.errors import ConfigError
from slackwater.domain.request import RequestStatus
from slackwater.ports import Page
from slackwater.store.schema import UtcDateTime, requests

READ_ONLY = "slackwater_read_only"  # an execution option: the transaction only reads

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


def status_is(status: RequestStatus) -> ColumnElement[bool]:
    """`status = '<literal>'`: a bound parameter would hide the partial indexes."""
    return requests.c.status == literal_column(f"'{status.value}'")


def _sqlite_setup(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "busy_timeout=60000", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Writers take the lock up front (no deadlock upgrading a read lock); readers
        # need none: in WAL mode they see the last commit while one writer works.
        reading = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


def upsert(dialect: str, table: Table) -> Any:
    """INSERT … ON CONFLICT, in the dialect's spelling."""
    return (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)


class Database:
    """One engine (connection pool) and the helpers that paper over the two dialects."""

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
        self.skip_locked = self.dialect == "postgresql"
        # The dialect's own processor: on SQLite the very text SQLAlchemy writes elsewhere,
        # so bulk-written timestamps compare equal to ORM-written ones.
        dialect = self.engine.dialect
        processor = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
        self.time: Any = processor or (lambda value: value)

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

    def writing(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction that writes (on SQLite it holds the write lock throughout)."""
        return self.engine.begin()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that only reads: it does not wait for a writer (SQLite)."""
        async with self.engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
            async with conn.begin():
                yield conn

    async def any_request(self, *where: ColumnElement[bool]) -> bool:
        """Whether a request matches, looked up without the write lock.

        Idle workers and the monitor ask often; asking first keeps them from stalling
        the writers (an intake, busy workers) while there is nothing to do.
        """
        async with self.reading() as conn:
            found = await conn.execute(select(requests.c.id).where(*where).limit(1))
            return found.first() is not None

    async def page(
        self,
        query: Select[Any],
        id_column: Any,
        *,
        limit: int,
        after: str | None,
        convert: Callable[[Row[Any]], Any],
        ascending: bool = False,
    ) -> Page:
        """A list page by (time-ordered) id, newest first unless `ascending`, after the
        id `after`."""
        if after:
            query = query.where(id_column > after if ascending else id_column < after)
        query = query.order_by(id_column if ascending else id_column.desc()).limit(limit + 1)
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        return Page([convert(r) for r in rows[:limit]], has_more=len(rows) > limit)

    def among(self, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
        """`column IN ids` as one bound value: SQLAlchemy would bind (and name) each id."""
        if self.dialect == "sqlite":
            listed = func.json_each(bindparam(None, orjson.dumps(list(ids)).decode()))
            return cast(
                ColumnElement[bool], column.in_(select(listed.table_valued("value").c.value))
            )
        return cast(
            ColumnElement[bool], column == any_(bindparam(None, list(ids), ARRAY(BigInteger)))
        )

    def upsert(self, table: Table) -> Any:
        """INSERT … ON CONFLICT, in the dialect's spelling."""
        return upsert(self.dialect, table)

    async def executemany(
        self, conn: AsyncConnection, sql: str, rows: Sequence[Sequence[Any]]
    ) -> None:
        """Driver SQL written with `?` placeholders, run once per row: bulk paths skip
        SQLAlchemy's per-row work."""
        if self.engine.dialect.paramstyle != "qmark":
            parts = sql.split("?")
            sql = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))
        await conn.exec_driver_sql(sql, list(rows))
