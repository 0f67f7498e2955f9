"""A pool that is always there at one price (on-demand, the local machine)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from slackwater.ports import PoolState


class StaticFeed:
    def __init__(self, price_per_hour: Decimal) -> None:
        self._state = PoolState(available=True, price_per_hour=price_per_hour)

    async def state(self, now: datetime) -> PoolState:
        return self._state
