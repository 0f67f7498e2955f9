"""Prices: the server samples each instance pool's feed (price and availability) every
`every_seconds` into the store, so the dashboard can show them over time; samples older
than `keep` go."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta

from slackwater.ports import Clock, PoolHistoryStore, PoolSample, PriceFeed
from slackwater.runtime.loops import run_until

log = logging.getLogger(__name__)


class PriceRecorder:
    def __init__(
        self,
        store: PoolHistoryStore,
        feeds: Mapping[str, PriceFeed],
        clock: Clock,
        *,
        every_seconds: float = 60.0,
        keep: timedelta = timedelta(days=30),
    ) -> None:
        self.store = store
        self.feeds = feeds
        self.clock = clock
        self.every_seconds = every_seconds
        self.keep = keep

    async def sample(self) -> list[PoolSample]:
        """Read every feed once and record what they say; a feed that fails (a cloud's
        price API out of reach) is skipped this time."""
        now = self.clock()
        samples = []
        for pool, feed in self.feeds.items():
            try:
                state = await feed.state(now)
            except Exception:
                log.warning("the feed of pool %s could not be read", pool, exc_info=True)
                continue
            samples.append(PoolSample(pool, now, state.available, state.price_per_hour))
        await self.store.add_pool_samples(samples)
        await self.store.forget_pool_samples(now - self.keep)
        return samples

    async def run(self, stopping: asyncio.Event) -> None:
        async def sample() -> None:
            await self.sample()  # nothing to report: the loop waits a period after each

        # Nothing wakes it early: a feed is sampled on the clock, not on demand.
        await run_until(
            stopping, asyncio.Event(), self.every_seconds, sample, "sampling the pools' feeds"
        )
