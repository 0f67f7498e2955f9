"""Results: what workers settle for their leases, the reuse cache, check outcomes, and
the finalizer's ordered read of a batch's requests.

A worker's settlement is written in one transaction, and only for requests its lease
still holds: a second write of the same results, or one from a worker whose lease ran
out (its requests may be running elsewhere), writes nothing. That is what makes each
result recorded exactly once (docs/architecture.md, "Exactly once").
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from slackwater.domain.money import to_nano
from slackwater.domain.request import RequestStatus, Result
from slackwater.ports import (
    CachedResult,
    CheckOutcomes,
    Escalation,
    FinishedRequest,
    Retry,
    Settlement,
)
from slackwater.store import batches, fair, sessions
from slackwater.store.database import Database, status_is
from slackwater.store.schema import model_outcomes, requests, result_cache

REQUEST_ID_KEY = "request_id_key"  # scheduler_state: the installation's id secret
_REQUEST_STATUS = {status.value: status for status in RequestStatus}


def _finished(
    *,
    status: str,
    status_code: int,
    response: str,
    finished_at: Any,
    pool: str | None,
    engine: str | None,
    price: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    compute_us: int | None,
    cost_nano: int | None,
    realtime_nano: int | None,
    id: int,
) -> tuple[Any, ...]:
    """The columns a recorded result sets, by name; `_RECORD_SQL` is built from these
    names. A plain tuple: sqlite3 binds one about twice as fast as a NamedTuple, and
    this runs once per result."""
    return (
        status, status_code, response, finished_at, pool, engine, price, prompt_tokens,
        completion_tokens, compute_us, cost_nano, realtime_nano, id,
    )  # fmt: skip


_RECORDED = tuple(inspect.signature(_finished).parameters)
# Compute time and cost add to what earlier (failed) attempts already cost.
_ADDED = frozenset({"compute_us", "cost_nano"})
_RECORD_SQL = (
    "UPDATE requests SET "
    + ", ".join(
        f"{column} = COALESCE({column}, 0) + ?" if column in _ADDED else f"{column} = ?"
        for column in _RECORDED[:-1]
    )
    + ", lease_id = NULL, lease_expires_at = NULL WHERE id = ?"
)
_RETRY_SQL = (
    "UPDATE requests SET status = 'retrying', not_before = ?, lease_id = NULL, "
    "lease_expires_at = NULL, cost_nano = COALESCE(cost_nano, 0) + ? WHERE id = ?"
)
_ESCALATE_SQL = (
    "UPDATE requests SET model = ?, body = ?, route = ?, cache_key = NULL, "
    "status = 'pending', lease_id = NULL, lease_expires_at = NULL, "
    "cost_nano = COALESCE(cost_nano, 0) + ? WHERE id = ?"
)


class SqlResults(Database):
    _id_key: bytes | None = None

    async def record(self, lease_id: str, settlement: Settlement, now: datetime) -> int:
        async with self.writing() as conn:
            written = await self._results(conn, lease_id, settlement, now)
            written += await self._retries(conn, lease_id, settlement.retries)
            await self._escalations(conn, lease_id, settlement.escalations)
            await self._add_outcomes(conn, settlement.outcomes)
        return written

    async def _held(
        self, conn: AsyncConnection, lease_id: str, ids: list[int]
    ) -> list[tuple[int, str, str | None]]:
        """(id, batch_id, cache_key) of the rows among `ids` this lease still holds
        (locked on PostgreSQL)."""
        query = select(requests.c.id, requests.c.batch_id, requests.c.cache_key).where(
            requests.c.lease_id == lease_id,
            status_is(RequestStatus.LEASED),
            self.among(requests.c.id, ids),
        )
        if self.skip_locked:
            query = query.with_for_update()
        return cast(list[tuple[int, str, str | None]], (await conn.execute(query)).all())

    async def _results(
        self, conn: AsyncConnection, lease_id: str, settlement: Settlement, now: datetime
    ) -> int:
        if not settlement.results:
            return 0
        by_id = {r.request_id: r for r in settlement.results}
        held = await self._held(conn, lease_id, list(by_id))
        if not held:
            return 0
        tallies: dict[str, batches.Tally] = {}
        rows: list[tuple[Any, ...]] = []
        cache: dict[str, dict[str, Any]] = {}
        finished_at = self.time(now)
        for request_id, batch_id, key in held:  # unpacked: faster than by name
            result: Result = by_id[request_id]
            outcome, charge = result.outcome, result.charge
            response = orjson.dumps(outcome.body).decode()
            if settlement.cache_until is not None and key and outcome.ok:
                cache[key] = {
                    "key": key,
                    "status_code": outcome.status_code,
                    "response": response,
                    "expires_at": settlement.cache_until,
                }
            cost = to_nano(charge.cost) if charge else None
            realtime = to_nano(charge.realtime_cost) if charge else None
            rows.append(
                _finished(
                    status=(RequestStatus.SUCCEEDED if outcome.ok else RequestStatus.FAILED).value,
                    status_code=outcome.status_code,
                    response=response,
                    finished_at=finished_at,
                    pool=charge.pool if charge else None,
                    engine=charge.engine if charge else None,
                    price=charge.price if charge else None,
                    prompt_tokens=outcome.usage.prompt_tokens,
                    completion_tokens=outcome.usage.completion_tokens,
                    compute_us=round(charge.compute_seconds * 1_000_000) if charge else None,
                    cost_nano=cost,
                    realtime_nano=realtime,
                    id=request_id,
                )
            )
            tally = tallies.get(batch_id)
            if tally is None:
                tally = tallies[batch_id] = batches.Tally()
            if outcome.ok:
                tally.completed += 1
            else:
                tally.failed += 1
            tally.cost_nano += cost or 0
            tally.realtime_nano += realtime or 0
            tally.prompt_tokens += outcome.usage.prompt_tokens
            tally.completion_tokens += outcome.usage.completion_tokens
        await self.executemany(conn, _RECORD_SQL, rows)
        if cache:
            upsert = self.upsert(result_cache)
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
        for batch_id, tally in tallies.items():
            await batches.count_results(conn, batch_id, tally)
        # A session waiting for these calls (a queued call's batch_id is its id) wakes in
        # the transaction that answers them.
        await sessions.wake_waiters(conn, list(tallies), now)
        return len(held)

    async def _retries(self, conn: AsyncConnection, lease_id: str, retries: Sequence[Retry]) -> int:
        """Put requests this lease holds aside until their `not_before`."""
        if not retries:
            return 0
        held = await self._held(conn, lease_id, [r.request_id for r in retries])
        batch_of = {request_id: batch_id for request_id, batch_id, _ in held}
        chosen = [r for r in retries if r.request_id in batch_of]
        if not chosen:
            return 0
        await self.executemany(
            conn,
            _RETRY_SQL,
            [(self.time(r.not_before), to_nano(r.cost), r.request_id) for r in chosen],
        )
        await batches.charge(conn, [(batch_of[r.request_id], r.cost) for r in chosen])
        return len(chosen)

    async def _escalations(
        self, conn: AsyncConnection, lease_id: str, escalations: Sequence[Escalation]
    ) -> None:
        """Send requests this lease holds back to the queue on another model."""
        if not escalations:
            return
        held = await self._held(conn, lease_id, [e.request_id for e in escalations])
        batch_of = {request_id: batch_id for request_id, batch_id, _ in held}
        chosen = [e for e in escalations if e.request_id in batch_of]
        if not chosen:
            return
        await self.executemany(
            conn,
            _ESCALATE_SQL,
            [
                (e.model, e.body.decode(), e.route.decode(), to_nano(e.cost), e.request_id)
                for e in chosen
            ],
        )
        await batches.charge(conn, [(batch_of[e.request_id], e.cost) for e in chosen])

    async def _add_outcomes(self, conn: AsyncConnection, counts: CheckOutcomes) -> None:
        upsert = self.upsert(model_outcomes)
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

    async def _request_ids(self) -> Callable[[int], str]:
        """Row number -> `req_` id: a keyed hash, so ids tell nothing of how many requests
        other projects made (row numbers are one counter for every project), and are the
        same each time a batch is finalized."""
        if self._id_key is None:
            async with self.reading() as conn:
                value = await fair.state(conn, REQUEST_ID_KEY)
            self._id_key = value.to_bytes(8, "little")
        key = self._id_key

        def request_id(row: int) -> str:
            digest = hashlib.blake2b(row.to_bytes(8, "little"), key=key, digest_size=12)
            return "req_" + digest.hexdigest()

        return request_id

    async def outcomes(self) -> dict[tuple[str, str], tuple[int, int]]:
        async with self.reading() as conn:
            rows = (await conn.execute(select(model_outcomes))).all()
        return {(r.model, r.task): (int(r.passed), int(r.failed)) for r in rows}

    async def cached(self, keys: Sequence[str], now: datetime) -> dict[str, CachedResult]:
        if not keys:
            return {}
        query = select(result_cache).where(
            result_cache.c.key.in_(list(set(keys))), result_cache.c.expires_at > now
        )
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        return {r.key: CachedResult(r.status_code, r.response.encode()) for r in rows}

    async def finished(self, batch_id: str, chunk: int = 2000) -> AsyncIterator[FinishedRequest]:
        request_id = await self._request_ids()
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
            async with self.reading() as conn:
                rows = (await conn.execute(query)).all()
            for id_, line, custom_id, status, code, response, route in rows:
                yield FinishedRequest(
                    line,
                    custom_id,
                    _REQUEST_STATUS[status],
                    code,
                    response.encode() if response is not None else None,
                    request_id(id_),
                    route.encode() if route is not None else None,
                )
            if len(rows) < chunk:
                return
            last = rows[-1].line
