"""The worker registry: who is alive in which pool (live spot workers are spot capacity
to the planner)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select

from slackwater.store.database import Database
from slackwater.store.schema import workers


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
