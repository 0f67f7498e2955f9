"""AWS spot prices, from EC2's DescribeSpotPriceHistory (needs the `aws` extra: boto3).

AWS publishes prices, not capacity: the pool counts as available while prices come
back, and preemption itself arrives as the instance's two-minute notice (a SIGTERM to
the worker). Prices are fetched at most every `refresh_seconds`; if a fetch fails,
the last price seen stands.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from slackwater.domain.errors import ConfigError
from slackwater.ports import PoolState

log = logging.getLogger(__name__)


class AwsSpotPriceFeed:
    def __init__(
        self,
        instance_type: str,
        zone: str | None = None,
        *,
        product: str = "Linux/UNIX",
        client: Any = None,
        refresh_seconds: float = 300.0,
    ) -> None:
        if not instance_type:
            raise ConfigError("aws feed: name the instance type, as aws:p3.2xlarge@us-east-1a")
        self.instance_type = instance_type
        self.zone = zone
        self.product = product
        self.refresh = timedelta(seconds=refresh_seconds)
        self._client = client
        self._state: PoolState | None = None
        self._fetched: datetime | None = None

    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError:
                raise ConfigError(
                    "the aws feed needs boto3: pip install 'slackwater[aws]'"
                ) from None
            self._client = boto3.client("ec2")
        return self._client

    async def state(self, now: datetime) -> PoolState:
        if self._state is None or self._fetched is None or now - self._fetched >= self.refresh:
            try:
                price = await asyncio.to_thread(self._latest_price, now)
            except Exception as exc:  # botocore errors: keep the last price seen
                log.warning("aws spot price for %s failed: %s", self.instance_type, exc)
                if self._state is not None:
                    return self._state
                return PoolState(available=False, price_per_hour=Decimal(0))
            self._fetched = now
            self._state = PoolState(available=price is not None, price_per_hour=price or Decimal(0))
        return self._state

    def _latest_price(self, now: datetime) -> Decimal | None:
        query: dict[str, Any] = {
            "InstanceTypes": [self.instance_type],
            "ProductDescriptions": [self.product],
            "StartTime": now - timedelta(hours=6),
            "EndTime": now,
        }
        if self.zone:
            query["AvailabilityZone"] = self.zone
        latest: tuple[datetime, Decimal] | None = None
        for page in self.client().get_paginator("describe_spot_price_history").paginate(**query):
            for item in page.get("SpotPriceHistory", []):
                seen = (item["Timestamp"], Decimal(item["SpotPrice"]))
                if latest is None or seen[0] > latest[0]:
                    latest = seen
        return latest[1] if latest else None
