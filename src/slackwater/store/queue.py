"""The queue: leasing runnable requests, keeping leases alive, giving work back, and
the counts the monitor, the planner and the metrics read.

Workers lease the most urgent requests first, then the fairest between projects
(`policy.fairness`); a lease holds its requests until it records them, releases them,
or runs out (docs/decisions/0001-leases-not-take-by-delete.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Row, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from slackwater.domain.ids import new_id
from slackwater.domain.request import Request, RequestStatus
from slackwater.policy import fairness
from slackwater.ports import Lease, OpenWork
from slackwater.store import fair
from slackwater.store.database import Database, status_is
from slackwater.store.schema import batches, requests

# At most this many prefixes are looked up per lease: each is one indexed query, and a
# chunk of requests that share nothing should cost little more than one that shares.
MAX_PREFIX_GROUPS = 8
OPEN = (RequestStatus.PENDING.value, RequestStatus.LEASED.value, RequestStatus.RETRYING.value)


async def close_unstarted(
    conn: AsyncConnection, batch_id: str, status: RequestStatus, now: datetime | None
) -> int:
    """Within the caller's transaction: end the batch's requests that have not started.
    Those that were queued count as failed in the batch's request counts (they are in its
    error file); staged ones were never accepted, and count nowhere."""
    closed = 0
    for unstarted in (RequestStatus.PENDING, RequestStatus.STAGED):
        result = await conn.execute(
            update(requests)
            .where(requests.c.batch_id == batch_id, status_is(unstarted))
            .values(status=status.value, finished_at=now)
        )
        closed += int(result.rowcount)
        if unstarted is RequestStatus.PENDING and result.rowcount:
            await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(failed=batches.c.failed + int(result.rowcount))
            )
    return closed


class SqlQueue(Database):
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
        if not models or (batches is not None and not batches):
            return None
        pending: ColumnElement[bool] = status_is(RequestStatus.PENDING)
        if batches is not None:
            pending = and_(pending, requests.c.batch_id.in_(batches))
        order = (requests.c.urgency, requests.c.fair_rank, requests.c.id)
        if not await self.any_request(pending, requests.c.model.in_(models)):
            return None
        async with self.writing() as conn:
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
                select(requests.c.id, requests.c.fair_rank, requests.c.urgency, requests.c.prefix)
                .where(pending, requests.c.model == model)
                .order_by(*order)
                .limit(limit)
            )
            if self.skip_locked:
                pick = pick.with_for_update(skip_locked=True)
            picked = (await conn.execute(pick)).all()
            if not picked:
                return None
            ids = [row.id for row in picked]
            if pack_prefixes and any(row.prefix for row in picked):
                ids = await self._packed(conn, pending, model, picked, limit)
            # Requests packed in ahead of their turn do not move the fair clock.
            clock = await fair.virtual_time(conn)
            kept = set(ids)
            moved = fairness.advanced(
                clock, max((row.fair_rank for row in picked if row.id in kept), default=clock)
            )
            if moved != clock:
                await fair.set_virtual_time(conn, moved)
            lease_id = new_id("lease")
            expires_at = now + timedelta(seconds=seconds)
            # One statement takes the rows and returns them (RETURNING: SQLite 3.35+).
            taken = (
                await conn.execute(
                    update(requests)
                    .where(self.among(requests.c.id, ids))
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
                        requests.c.tier,
                        requests.c.urgency,
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
                    tier=tier,
                    urgency=urgency,
                )
                for (
                    id_,
                    batch,
                    custom_id,
                    name,
                    endpoint,
                    body,
                    tries,
                    key,
                    route,
                    tier,
                    urgency,
                ) in rows
            ],
        )

    async def _packed(
        self,
        conn: AsyncConnection,
        pending: ColumnElement[bool],
        model: str,
        picked: Sequence[Row[Any, Any, Any, Any]],
        limit: int,
    ) -> list[int]:
        """The lease's request ids with prefix-aware packing: in queue order, each request
        whose prompt's leading part others share brings the pending ones sharing it, due in
        the same deadline step, along with it. A request left out for them is due no
        sooner than they are; it heads a lease moments later."""
        ids: list[int] = []
        taken: set[int] = set()
        groups = 0
        for row in picked:
            if len(ids) >= limit:
                break
            if row.id in taken:
                continue
            if row.prefix is None or groups >= MAX_PREFIX_GROUPS:
                ids.append(row.id)
                taken.add(row.id)
                continue
            groups += 1
            same = (
                select(requests.c.id)
                .where(
                    pending,
                    requests.c.model == model,
                    requests.c.prefix == row.prefix,
                    requests.c.urgency == row.urgency,
                )
                .order_by(requests.c.fair_rank, requests.c.id)
                .limit(limit - len(ids))
            )
            if self.skip_locked:
                same = same.with_for_update(skip_locked=True)
            for request_id in (await conn.execute(same)).scalars():
                if request_id not in taken:
                    ids.append(request_id)
                    taken.add(request_id)
        return ids

    async def pending_heads(
        self, models: Sequence[str], batches: Sequence[str] | None = None, cap: int = 1024
    ) -> dict[str, tuple[int, datetime]]:
        heads = {}
        async with self.reading() as conn:
            for model in models:
                pending: ColumnElement[bool] = and_(
                    status_is(RequestStatus.PENDING), requests.c.model == model
                )
                if batches is not None:
                    pending = and_(pending, requests.c.batch_id.in_(list(batches)))
                # Both read the pending index only as far as they need: the head (the
                # next to be leased), and at most `cap` rows.
                head = (
                    await conn.execute(
                        select(requests.c.deadline)
                        .where(pending)
                        .order_by(requests.c.urgency, requests.c.fair_rank, requests.c.id)
                        .limit(1)
                    )
                ).scalar()
                if head is None:
                    continue
                some = select(requests.c.id).where(pending).limit(cap).subquery()
                count = (await conn.execute(select(func.count()).select_from(some))).scalar_one()
                heads[model] = (int(count), head)
        return heads

    async def heartbeat(self, lease_id: str, now: datetime, seconds: float) -> int:
        async with self.writing() as conn:
            result = await conn.execute(
                update(requests)
                .where(requests.c.lease_id == lease_id, status_is(RequestStatus.LEASED))
                .values(lease_expires_at=now + timedelta(seconds=seconds))
            )
            return int(result.rowcount)

    async def release(self, lease_id: str) -> int:
        async with self.writing() as conn:
            result = await conn.execute(
                update(requests)
                .where(requests.c.lease_id == lease_id, status_is(RequestStatus.LEASED))
                .values(
                    status=RequestStatus.PENDING.value,
                    lease_id=None,
                    lease_expires_at=None,
                    attempts=requests.c.attempts - 1,  # a release is not a failed attempt
                )
            )
            return int(result.rowcount)

    async def reap_leases(self, now: datetime) -> int:
        expired = (status_is(RequestStatus.LEASED), requests.c.lease_expires_at < now)
        if not await self.any_request(*expired):
            return 0
        async with self.writing() as conn:
            result = await conn.execute(
                update(requests)
                .where(*expired)
                .values(status=RequestStatus.PENDING.value, lease_id=None, lease_expires_at=None)
            )
            return int(result.rowcount)

    async def promote_retries(self, now: datetime) -> int:
        due = (status_is(RequestStatus.RETRYING), requests.c.not_before <= now)
        if not await self.any_request(*due):
            return 0
        async with self.writing() as conn:
            result = await conn.execute(
                update(requests)
                .where(*due)
                .values(status=RequestStatus.PENDING.value, not_before=None)
            )
            return int(result.rowcount)

    async def reroute(self, batch_id: str, model: str, to: str) -> int:
        waiting = (RequestStatus.PENDING.value, RequestStatus.RETRYING.value)
        async with self.writing() as conn:
            result = await conn.execute(
                update(requests)
                .where(
                    requests.c.batch_id == batch_id,
                    requests.c.model == model,
                    requests.c.status.in_(waiting),
                )
                .values(model=to)
            )
            return int(result.rowcount)

    async def close_unstarted(self, batch_id: str, status: RequestStatus) -> int:
        async with self.writing() as conn:
            return await close_unstarted(conn, batch_id, status, None)

    async def count_open(self, batch_id: str) -> int:
        query = select(func.count()).where(
            requests.c.batch_id == batch_id, requests.c.status.in_(OPEN)
        )
        async with self.reading() as conn:
            return int((await conn.execute(query)).scalar_one())

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
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [OpenWork(r.batch_id, r.model, r.n, r.deadline) for r in rows]

    async def queue_depth(self) -> dict[tuple[str, str], int]:
        query = (
            select(requests.c.model, requests.c.status, func.count())
            .where(requests.c.status.in_(OPEN))
            .group_by(requests.c.model, requests.c.status)
        )
        async with self.reading() as conn:
            return {(m, s): int(n) for m, s, n in (await conn.execute(query)).all()}
