"""The ledger: what each request cost where it ran, against the same tokens in real
time, summed by batch, project, pool, model, engine or day (money in nanodollars, exact:
docs/decisions/0005-ledger-in-nanodollars.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from slackwater.domain.money import from_nano
from slackwater.domain.request import RequestStatus
from slackwater.ports import LEDGER_GROUPS, LedgerEntry, LedgerRow, RequestView
from slackwater.store import database, fair
from slackwater.store.database import Database
from slackwater.store.schema import ledger_rollup, requests

_a_batch = requests.c.batch_id.startswith("batch_", autoescape=True)  # not a call


ROLLED_UP_TO = "ledger_rolled_up_to"  # scheduler_state: microseconds since the epoch
# Requests are rolled up only once they finished this long ago: a result's finished_at is
# its worker's clock when it settled, so one committed a little late, or by a worker whose
# clock is a little behind, still lands after the watermark.
ROLLUP_LAG = timedelta(minutes=10)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ROLLED_KEYS = ("project", "model", "tier", "pool", "engine")  # and "day"
_SUMS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "compute_us",
    "cost_nano",
    "realtime_nano",
)


def _day(dialect: str) -> Any:
    finished = requests.c.finished_at
    if dialect == "sqlite":
        return func.date(finished)
    return func.to_char(func.timezone("UTC", finished), "YYYY-MM-DD")


def _sums() -> list[Any]:
    return [
        func.count().label("requests"),
        *(
            func.coalesce(func.sum(requests.c[name]), 0).label(name)
            for name in _SUMS
            if name != "requests"
        ),
    ]


async def _watermark(conn: AsyncConnection) -> datetime:
    return _EPOCH + timedelta(microseconds=await fair.state(conn, ROLLED_UP_TO))


def _after(watermark: datetime) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """The charged requests not in the rollup, in two parts that each read a range of the
    partial index `ix_requests_charged` (their OR would scan all of it): those finished
    since the watermark, and those charged for attempts and not finished."""
    charged, finished = requests.c.cost_nano.is_not(None), requests.c.finished_at
    return and_(charged, finished >= watermark), and_(charged, finished.is_(None))


async def fold(conn: AsyncConnection, where: ColumnElement[bool]) -> int:
    """Within the caller's transaction: add the charged requests matching `where` to the
    rollup. Only for requests the reports would not otherwise see again (finished before
    the new watermark, or about to be deleted): the spend outlives its rows."""
    keys = [requests.c[name] for name in _ROLLED_KEYS] + [_day(conn.dialect.name)]
    query = select(*keys, *_sums()).where(requests.c.cost_nano.is_not(None), where)
    rows = (await conn.execute(query.group_by(*keys))).all()
    if not rows:
        return 0
    upsert = database.upsert(conn.dialect.name, ledger_rollup)
    statement = upsert.on_conflict_do_update(
        index_elements=[*_ROLLED_KEYS, "day"],
        set_={name: ledger_rollup.c[name] + upsert.excluded[name] for name in _SUMS},
    )
    values = [
        {
            **{name: row[i] or "" for i, name in enumerate([*_ROLLED_KEYS, "day"])},
            **{name: int(row[len(keys) + i]) for i, name in enumerate(_SUMS)},
        }
        for row in rows
    ]
    await conn.execute(statement, values)
    return sum(int(row.requests) for row in rows)


async def fold_unrolled(conn: AsyncConnection, where: ColumnElement[bool]) -> int:
    """Within the caller's transaction, before deleting requests: keep in the rollup the
    spend of those not in it yet."""
    return await fold(conn, and_(where, or_(*_after(await _watermark(conn)))))


class SqlLedger(Database):
    async def roll_up_ledger(self, now: datetime) -> int:
        """Move the watermark up to `now` less the lag, adding the requests it passes to
        the rollup; how many it added."""
        until = now - ROLLUP_LAG
        async with self.writing() as conn:
            if self.dialect == "postgresql":
                # One roller at a time: each would otherwise add the same requests.
                await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727275)")
            start = await _watermark(conn)
            if until <= start:
                return 0
            finished = requests.c.finished_at
            added = await fold(conn, and_(finished >= start, finished < until))
            await fair.set_state(conn, ROLLED_UP_TO, (until - _EPOCH) // timedelta(microseconds=1))
        return added

    async def ledger(
        self,
        by: str,
        project: str | None = None,
        since: datetime | None = None,
        *,
        session: str | None = None,
        daily: bool = False,
    ) -> list[LedgerRow]:
        if by == "day":
            key: Any = _day(self.dialect)
        elif by == "batch":
            # Calls (answered in real time or queued, on the batch tier too) are one line
            # per tier, not per call.
            key = case(
                (and_(requests.c.tier == "batch", _a_batch), requests.c.batch_id),
                else_=literal("calls:") + requests.c.tier,
            )
        elif by == "session":
            # A session's inferences are calls named `<session id>.<place>`.
            batch = requests.c.batch_id
            key = (
                func.substr(batch, 1, func.instr(batch, ".") - 1)
                if self.dialect == "sqlite"
                else func.split_part(batch, ".", 1)
            )
        elif by in LEDGER_GROUPS:
            key = requests.c[LEDGER_GROUPS[by]]
        else:
            raise ValueError(f"cannot group the ledger by {by!r}")
        query = select(key.label("key")).where(requests.c.cost_nano.is_not(None))
        if by == "session":
            query = query.where(requests.c.batch_id.like("sess\\_%.%", escape="\\"))
        if session is not None:
            query = query.where(requests.c.batch_id.startswith(f"{session}.", autoescape=True))
        if project is not None:
            query = query.where(requests.c.project == project)
        if since is not None:
            query = query.where(requests.c.finished_at >= since)
        rolled = by in (*_ROLLED_KEYS, "day") and since is None and session is None
        keys = [key, _day(self.dialect)] if daily else [key]
        query = query.add_columns(*keys[1:], *_sums()).group_by(*keys)
        totals: dict[tuple[str, ...], list[int]] = {}
        async with self.reading() as conn:
            queries = [query]
            if rolled:
                queries = [query.where(part) for part in _after(await _watermark(conn))]
                columns = [ledger_rollup.c[by]] + ([ledger_rollup.c.day] if daily else [])
                summed = select(*columns, *(func.sum(ledger_rollup.c[n]) for n in _SUMS))
                if project is not None:
                    summed = summed.where(ledger_rollup.c.project == project)
                for row in (await conn.execute(summed.group_by(*columns))).all():
                    _add(totals, [k or None for k in row[: len(keys)]], row[len(keys) :])
            for part in queries:
                for row in (await conn.execute(part)).all():
                    _add(totals, row[: len(keys)], row[len(keys) :])
        return [
            LedgerRow(
                key=grouped[0],
                requests=n,
                prompt_tokens=prompt,
                completion_tokens=completion,
                compute_seconds=compute_us / 1_000_000,
                cost=from_nano(cost),
                realtime_cost=from_nano(realtime),
                day=grouped[1] if daily else None,
            )
            for grouped, (n, prompt, completion, compute_us, cost, realtime) in sorted(
                totals.items(), key=lambda item: item[0][::-1]
            )
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
        async with self.reading() as conn:
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

    async def batch_requests(
        self,
        batch_id: str,
        *,
        after_line: int = 0,
        limit: int = 50,
        custom_id: str | None = None,
        failed_only: bool = False,
    ) -> list[RequestView]:
        query = (
            select(
                requests.c.line,
                requests.c.custom_id,
                requests.c.model,
                requests.c.status,
                requests.c.attempts,
                requests.c.status_code,
                requests.c.response,
                requests.c.route,
                requests.c.pool,
                requests.c.cost_nano,
                requests.c.realtime_nano,
            )
            .where(requests.c.batch_id == batch_id, requests.c.line > after_line)
            .order_by(requests.c.line)
            .limit(limit)
        )
        if custom_id:
            query = query.where(requests.c.custom_id.contains(custom_id, autoescape=True))
        if failed_only:
            query = query.where(
                requests.c.status.in_([RequestStatus.FAILED.value, RequestStatus.RETRYING.value])
            )
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [
            RequestView(
                line=r.line,
                custom_id=r.custom_id,
                model=r.model,
                status=r.status,
                attempts=r.attempts,
                status_code=r.status_code,
                error=_error_message(r.response)
                if r.status_code and r.status_code >= 400
                else None,
                route=r.route,
                pool=r.pool,
                cost=from_nano(r.cost_nano) if r.cost_nano is not None else None,
                realtime_cost=from_nano(r.realtime_nano) if r.realtime_nano is not None else None,
            )
            for r in rows
        ]

    async def recent_routes(self, project: str, limit: int) -> list[str]:
        query = (
            select(requests.c.route)
            .where(requests.c.project == project, requests.c.route.is_not(None))
            .order_by(requests.c.id.desc())
            .limit(limit)
        )
        async with self.reading() as conn:
            return [route for (route,) in (await conn.execute(query)).all()]


def _error_message(response: str | None) -> str | None:
    if not response:
        return None
    try:
        error = orjson.loads(response).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return response[:200]
    return str(error.get("message") or error)[:500]


def _add(
    totals: dict[tuple[str, ...], list[int]], keys: Sequence[Any], sums: Sequence[Any]
) -> None:
    found = totals.setdefault(tuple(str(k) for k in keys), [0] * len(_SUMS))
    for i, value in enumerate(sums):
        found[i] += int(value or 0)
