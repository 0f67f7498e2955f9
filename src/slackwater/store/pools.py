"""Pools over time: the price and availability samples the server takes of their feeds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import delete, select

from slackwater.ports import PoolSample
from slackwater.store.database import Database
from slackwater.store.schema import pool_samples


class SqlPools(Database):
    async def add_pool_samples(self, samples: Sequence[PoolSample]) -> None:
        if not samples:
            return
        rows = [
            {
                "pool": s.pool,
                "at": s.at,
                "available": s.available,
                "price_per_hour": str(s.price_per_hour),
            }
            for s in samples
        ]
        async with self.writing() as conn:
            # A sample taken twice at one instant (two servers) is kept once.
            await conn.execute(self.upsert(pool_samples).on_conflict_do_nothing(), rows)

    async def pool_samples(self, since: datetime) -> list[PoolSample]:
        query = (
            select(pool_samples)
            .where(pool_samples.c.at >= since)
            .order_by(pool_samples.c.pool, pool_samples.c.at)
        )
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [PoolSample(r.pool, r.at, r.available, Decimal(r.price_per_hour)) for r in rows]

    async def forget_pool_samples(self, before: datetime) -> int:
        async with self.writing() as conn:
            result = await conn.execute(delete(pool_samples).where(pool_samples.c.at < before))
        return int(result.rowcount)
