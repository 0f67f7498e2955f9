"""The pools' prices and availability over time: the server samples each instance pool's
feed into the store, and the capacity page charts the last day of them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from slackwater.config import PoolConfig
from slackwater.domain.pool import Trace
from slackwater.feeds.static import StaticFeed
from slackwater.feeds.trace import TraceFeed
from slackwater.ports import PoolState
from slackwater.runtime.prices import PriceRecorder
from slackwater.store.sql import SqlStore
from tests.integration.conftest import Server

START = datetime(2026, 11, 1, tzinfo=UTC)


class Unreachable:
    async def state(self, now: datetime) -> PoolState:
        raise ConnectionError("the price API is out of reach")


async def test_each_feed_is_sampled_a_failing_one_skipped_and_old_samples_forgotten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.migrate()
    trace = Trace(60, [1, 1, 0, 1], [Decimal("0.9"), Decimal("1.1"), Decimal("1.1"), Decimal("2")])
    now = [START]
    recorder = PriceRecorder(
        store,
        {
            "spot": TraceFeed(trace, START, Decimal("0.5")),
            "on-demand": StaticFeed(Decimal("3.06")),
            "aws-spot": Unreachable(),
        },
        lambda: now[0],
        keep=timedelta(minutes=3),
    )
    for minute in range(5):
        now[0] = START + timedelta(minutes=minute)
        await recorder.sample()
    assert "the feed of pool aws-spot could not be read" in caplog.text
    samples = await store.pool_samples(START)
    # Minute 0 was more than three minutes before the last sample: forgotten.
    spot = [(s.at - START, s.available, s.price_per_hour) for s in samples if s.pool == "spot"]
    assert spot == [
        (timedelta(minutes=1), True, Decimal("1.1")),
        (timedelta(minutes=2), False, Decimal("1.1")),
        (timedelta(minutes=3), True, Decimal("2")),
        (timedelta(minutes=4), True, Decimal("0.9")),  # the trace loops
    ]
    assert {s.price_per_hour for s in samples if s.pool == "on-demand"} == {Decimal("3.06")}
    assert {s.pool for s in samples} == {"spot", "on-demand"}
    await recorder.sample()  # a second sample at the same instant is kept once
    assert len(await store.pool_samples(START)) == len(samples)
    await store.close()


async def test_the_capacity_page_charts_the_sampled_prices_and_availability(
    server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    availability = tmp_path / "spot.json"
    availability.write_text(json.dumps({"metadata": {"gap_seconds": 60}, "data": [0, 1, 0]}))
    server: Server = await server_factory(
        pools=[
            PoolConfig(
                name="spot-a",
                kind="spot",
                price_per_hour=Decimal("0.9"),
                feed=f"trace:{availability}",
            ),
            PoolConfig(name="od", kind="on_demand", price_per_hour=Decimal("3")),
        ],
        workers=0,
    )
    recorder = server.services.prices
    assert recorder is not None
    # The server takes its first sample on starting; then start from none.
    store = server.services.store
    for _ in range(100):
        if await store.pool_samples(server.clock() - timedelta(minutes=1)):
            break
        await asyncio.sleep(0.02)
    assert await store.forget_pool_samples(server.clock() + timedelta(days=1)) == 2
    assert "No samples yet" in (await server.client.get("/ui/capacity")).text
    for _ in range(3):
        server.clock.offset += timedelta(minutes=1)
        await recorder.sample()
    page = await server.client.get("/ui/capacity")
    assert page.status_code == 200
    data = json.loads(
        page.text.split('id="history-data" type="application/json">')[1].split("</script>")[0]
    )
    assert len(data["times"]) == 3
    assert set(data["prices"]) == {"spot-a", "od"}
    assert data["prices"]["od"] == [3.0, 3.0, 3.0]
    # The trace replays from the server's start: one of three minutes without spot.
    assert sorted(data["available"]["spot-a"]) == [0, 1, 1]
    assert data["available"]["od"] == [1, 1, 1]
