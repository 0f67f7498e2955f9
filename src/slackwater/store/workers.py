"""The worker registry: who is alive in which pool (live spot workers are spot capacity
to the planner), and where each batch has been running lately."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select

from slackwater.store.database import Database
from slackwater.store.schema import requests, workers


class SqlWorkers(Database):
    async def worker_seen(self, owner: str, pool: str, kind: str, now: datetime) -> None:
        row = {"owner": owner, "pool": pool, "kind": kind, "seen_at": now}
        upsert = self.upsert(workers).values(**row)
        async with self.writing() as conn:
            await conn.execute(
                upsert.on_conflict_do_update(index_elements=["owner"], set_={"seen_at": now})
            )

    async def worker_gone(self, owner: str) -> None:
        async with self.writing() as conn:
            await conn.execute(delete(workers).where(workers.c.owner == owner))

    async def live_workers(self, pool: str, since: datetime) -> int:
        query = select(func.count()).where(workers.c.pool == pool, workers.c.seen_at >= since)
        async with self.reading() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def running_in(self, since: datetime) -> dict[str, str]:
        """The pool each batch ran its latest request in, of those charged since `since`
        (a batch that finished none since then is not there)."""
        query = (
            select(
                requests.c.batch_id, requests.c.pool, func.max(requests.c.finished_at).label("at")
            )
            .where(
                requests.c.finished_at >= since,
                requests.c.cost_nano.is_not(None),
                requests.c.pool.is_not(None),
            )
            .group_by(requests.c.batch_id, requests.c.pool)
            .order_by("at")
        )
        async with self.reading() as conn:
            # Oldest first: a batch's latest pool overwrites the ones before it.
            return {r.batch_id: r.pool for r in (await conn.execute(query)).all()}
