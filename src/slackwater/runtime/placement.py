"""Placement: which batches (and dataset jobs) a worker on a spot or on-demand pool may
lease now.

Each open batch is a planner Job: its unfinished requests times the seconds a request
takes (measured: the ledger's compute time per request of that model; until a model has
been measured, `seconds_per_request`, which errs towards on-demand), due at its
deadline. The planner's decision for it says where it runs: spot workers lease the
batches it sends to spot, on-demand workers only those it sends to on-demand (slack down
to the reserve, or spot gone or over its price ceiling). Spot counts as there while the
spot pool's feed offers it and a spot worker has been seen lately.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from slackwater.domain.pool import Pool, PoolKind
from slackwater.policy.planner import Action, Job, Market, Policy
from slackwater.ports import CapacityStore, Clock, PriceFeed

WANTS = {PoolKind.SPOT: Action.SPOT, PoolKind.ON_DEMAND: Action.ON_DEMAND}
# A table row of a classical model, until one has been measured, against a request's
# `seconds_per_request`: rows are predicted thousands at a time.
ROW_SHARE = 0.001


class Placement:
    def __init__(
        self,
        store: CapacityStore,
        pool: Pool,
        feed: PriceFeed,
        clock: Clock,
        policy: Policy,
        *,
        spot_feed: PriceFeed | None,
        on_demand_price: Decimal,
        restart_seconds: float,
        tick_seconds: float,
        max_spot_price: Decimal | None = None,
        refresh_seconds: float = 2.0,
        alive_seconds: float = 30.0,
        default_seconds_per_request: float = 1.0,
    ) -> None:
        if pool.kind not in WANTS:
            raise ValueError(f"pool {pool.name!r} ({pool.kind}) is not placed by the planner")
        self.store = store
        self.pool = pool
        self.feed = feed
        self.spot_feed = feed if pool.kind is PoolKind.SPOT else spot_feed
        self.clock = clock
        self.policy = policy
        self.on_demand_price = on_demand_price
        self.restart_seconds = restart_seconds
        self.tick_seconds = tick_seconds
        self.max_spot_price = max_spot_price
        self.refresh_seconds = refresh_seconds
        self.alive = timedelta(seconds=alive_seconds)
        self.default_seconds = default_seconds_per_request
        self._allowed: list[str] = []
        self._at = float("-inf")
        self.reasons: dict[str, str] = {}  # batch -> why, as last decided
        self._speed: dict[str, float] = {}
        self._speed_at = float("-inf")

    async def allowed(self) -> list[str]:
        """The batches this pool's workers may lease now (decided at most every refresh)."""
        if time.monotonic() - self._at < self.refresh_seconds:
            return self._allowed
        now = self.clock()
        market = await self._market()
        speed = await self._speeds()
        remaining: dict[str, float] = defaultdict(float)
        deadlines: dict[str, datetime] = {}
        for work in await self.store.open_work():
            per_request = speed.get(work.model, self.default_seconds)
            remaining[work.batch_id] += work.requests * per_request
            deadlines[work.batch_id] = min(
                work.deadline, deadlines.get(work.batch_id, work.deadline)
            )
        # Dataset jobs are placed as batches are: their rows left at their measured rate.
        for table_job in await self.store.open_jobs():
            per_row = table_job.seconds_per_row or self.default_seconds * ROW_SHARE
            remaining[table_job.id] += table_job.rows_left * per_row
            deadlines[table_job.id] = table_job.deadline
        allowed, reasons = [], {}
        for batch_id, seconds in remaining.items():
            job = Job(
                id=batch_id,
                arrival=now,
                deadline=deadlines[batch_id],
                total_seconds=seconds,
                remaining_seconds=seconds,
            )
            decision = self.policy.decide(job, market, now)
            reasons[batch_id] = f"{decision.action}: {decision.reason}"
            if decision.action is WANTS[self.pool.kind]:
                allowed.append(batch_id)
        self._allowed, self.reasons, self._at = allowed, reasons, time.monotonic()
        return allowed

    async def _speeds(self) -> dict[str, float]:
        """Seconds per request of each model, from the ledger (re-read every minute)."""
        if time.monotonic() - self._speed_at > 60:
            rows = await self.store.ledger("model")
            self._speed = {r.key: r.compute_seconds / r.requests for r in rows if r.requests}
            self._speed_at = time.monotonic()
        return self._speed

    async def _market(self) -> Market:
        now = self.clock()
        available, price, uptime = False, self.on_demand_price, None
        if self.spot_feed is not None:
            state = await self.spot_feed.state(now)
            price, uptime = state.price_per_hour, state.mean_uptime_seconds
            live = self.pool.kind is PoolKind.SPOT or (
                await self.store.live_workers(PoolKind.SPOT.value, now - self.alive) > 0
            )
            available = state.available and live
        return Market(
            spot_available=available,
            spot_price=price,
            on_demand_price=self.on_demand_price,
            tick_seconds=self.tick_seconds,
            restart_seconds=self.restart_seconds,
            max_spot_price=self.max_spot_price,
            spot_mean_uptime_seconds=uptime,
        )
