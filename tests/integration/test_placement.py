"""Workers on spot and on-demand pools: what the planner lets them lease, and draining."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from slackwater.domain.pool import Pool, PoolKind
from slackwater.domain.predictions import JobStatus
from slackwater.domain.request import Charge, Outcome, Result
from slackwater.feeds.static import StaticFeed
from slackwater.policy.planner import SlackReserve
from slackwater.ports import PoolSample, Settlement
from slackwater.runtime.placement import ROW_SHARE, Placement
from slackwater.runtime.worker import Worker
from tests.integration.conftest import Server, chat_line, fake_models

SPOT = Pool("spot", PoolKind.SPOT, Decimal("0.9"))
ON_DEMAND = Pool("od", PoolKind.ON_DEMAND, Decimal("3"))


def placement(
    server: Server,
    pool: Pool,
    restart_seconds: float = 60.0,
    spot: tuple[Pool, ...] = (SPOT,),
    seconds_per_request: float = 1.0,
    policy: SlackReserve | None = None,
) -> Placement:
    svc = server.services
    return Placement(
        svc.store,
        pool,
        StaticFeed(pool.price_per_hour),
        svc.clock,
        policy or SlackReserve(reserve_restarts=2),
        spot_feeds={p.name: StaticFeed(p.price_per_hour) for p in spot},
        on_demand_price=ON_DEMAND.price_per_hour,
        on_demand_pools=[ON_DEMAND.name],
        restart_seconds=restart_seconds,
        tick_seconds=10,
        refresh_seconds=0,
        default_seconds_per_request=seconds_per_request,
    )


async def record(
    server: Server, pool: Pool, hours: int, up: Callable[[int], bool], now: datetime | None = None
) -> None:
    """The server's feed samples of a spot pool, every five minutes over the `hours`
    before `now`: spot there `up(minutes ago)`."""
    now = now or server.clock()
    await server.services.store.add_pool_samples(
        [
            PoolSample(pool.name, now - timedelta(minutes=m), up(m), pool.price_per_hour)
            for m in range(hours * 60, 0, -5)
        ]
    )


async def open_batch(server: Server, window: str) -> dict[str, Any]:
    """A batch of three requests, in progress (no worker in the server takes it)."""
    batch = await server.submit([chat_line(i) for i in range(3)], window=window)
    await server.wait(batch["id"], lambda b: b["status"] == "in_progress")
    return batch


async def test_on_demand_waits_while_spot_runs_and_takes_over_when_slack_runs_low(
    server_factory: Any,
) -> None:
    server: Server = await server_factory(run_worker_in_server=False)
    store = server.services.store
    roomy, tight = await open_batch(server, "24h"), await open_batch(server, "2m")
    now = server.clock()
    await store.worker_seen("spot-worker", "spot", "spot", now)

    # Spot is there: spot takes both (a 60 s restart still fits the 2-minute window).
    assert sorted(await placement(server, SPOT).allowed()) == sorted([roomy["id"], tight["id"]])
    on_demand = placement(server, ON_DEMAND)
    assert await on_demand.allowed() == []
    assert "spot is available" in on_demand.reasons[roomy["id"]]

    # Spot is gone: on-demand takes the batch whose slack is down to the reserve
    # (2 restarts of 60 s), and the roomy one waits for spot to come back.
    await store.worker_gone("spot-worker")
    assert await on_demand.allowed() == [tight["id"]]
    assert on_demand.reasons[roomy["id"]].startswith("hold")

    # A restart longer than the window leaves spot nothing it could safely start.
    assert await placement(server, SPOT, restart_seconds=600).allowed() == [roomy["id"]]


async def test_the_reserve_grows_with_how_often_spot_has_come_and_gone(
    server_factory: Any,
) -> None:
    server: Server = await server_factory(run_worker_in_server=False)
    # Three hours of work (an hour a request, as measured) in a six-hour window.
    batch = await open_batch(server, "6h")
    on_demand = placement(server, ON_DEMAND, restart_seconds=1800, seconds_per_request=3600)

    # Spot gone and no history: the fixed reserve (2 restarts) leaves room to wait.
    assert await on_demand.allowed() == []
    assert on_demand.reasons[batch["id"]].startswith("hold")

    # The server's samples show spot coming back twice an hour through the last day:
    # about 24 round trips in the work left, each worth restarts of slack, more than
    # the window has. On-demand takes the batch now, while the slack can still buy spot.
    await record(server, SPOT, 24, lambda m: m % 30 >= 15)
    again = placement(server, ON_DEMAND, restart_seconds=1800, seconds_per_request=3600)
    assert await again.allowed() == [batch["id"]]
    assert "reserve" in again.reasons[batch["id"]]


async def test_on_demand_takes_over_in_an_outage_longer_than_the_slack_can_wait_out(
    server_factory: Any,
) -> None:
    server: Server = await server_factory(run_worker_in_server=False)
    # 21 hours of work (7 a request, as measured) in a day.
    batch = await open_batch(server, "24h")
    # The server's samples of the last three days: spot for two hours in twelve; now
    # gone for eight hours. Two ten-hour outages to be expected before the deadline
    # would take 20 hours of waiting; four times the three hours of slack allow each
    # under six.
    await record(server, SPOT, 72, lambda m: 0 < (m - 480) % 720 <= 120)
    on_demand = placement(server, ON_DEMAND, seconds_per_request=7 * 3600)
    assert await on_demand.allowed() == [batch["id"]]
    assert "per outage" in on_demand.reasons[batch["id"]]
    # Told to wait every outage out, it waits (its slack is above the reserve).
    patient = placement(
        server,
        ON_DEMAND,
        seconds_per_request=7 * 3600,
        policy=SlackReserve(reserve_restarts=2, outage_wait_factor=1000),
    )
    assert await patient.allowed() == []
    assert patient.reasons[batch["id"]].startswith("hold")
    market = await on_demand._market()
    assert (
        market.spot_gone_seconds is not None and 8 * 3600 <= market.spot_gone_seconds < 8.1 * 3600
    )
    # Both outages that ended in the last day, measured whole (one began 32 hours ago).
    assert [round(o / 3600) for o in market.outage_seconds] == [10, 10]


async def test_spot_that_moves_between_pools_asks_no_reserve_for_round_trips(
    server_factory: Any,
) -> None:
    server: Server = await server_factory(run_worker_in_server=False)
    batch = await open_batch(server, "6h")
    other = Pool("spot-b", PoolKind.SPOT, Decimal("0.9"))
    # Through the last day each pool came and went twice an hour, in turn: a batch
    # would have failed over from one to the other and never gone to on-demand.
    now = server.clock()  # both pools sampled at the same moments
    await record(server, SPOT, 24, lambda m: m % 30 >= 15, now)
    await record(server, other, 24, lambda m: m % 30 < 15, now)
    on_demand = placement(
        server, ON_DEMAND, spot=(SPOT, other), restart_seconds=1800, seconds_per_request=3600
    )
    assert await on_demand.allowed() == []
    assert on_demand.reasons[batch["id"]].startswith("hold")
    # The first pool's samples alone are the flapping of the test above: on-demand now.
    alone = placement(server, ON_DEMAND, restart_seconds=1800, seconds_per_request=3600)
    assert await alone.allowed() == [batch["id"]]


async def test_the_spot_run_expected_is_that_of_spot_in_any_pool(server_factory: Any) -> None:
    server: Server = await server_factory(run_worker_in_server=False)
    other = Pool("spot-b", PoolKind.SPOT, Decimal("0.9"))
    # Through the last day, each hour: the first pool had spot for half an hour, the
    # second for the half hour from twenty minutes in. A batch fails over between them,
    # so the run it can expect on leaving on-demand is fifty minutes, as the simulator
    # reckons it; not the feeds' own (which say nothing here).
    now = server.clock()
    await record(server, SPOT, 24, lambda m: m % 60 < 30, now)
    await record(server, other, 24, lambda m: 20 <= m % 60 < 50, now)
    both = placement(server, ON_DEMAND, spot=(SPOT, other))
    assert (await both._market()).spot_mean_uptime_seconds == pytest.approx(50 * 60, rel=0.05)
    alone = placement(server, ON_DEMAND)
    assert (await alone._market()).spot_mean_uptime_seconds == pytest.approx(30 * 60, rel=0.05)


async def test_work_moves_to_another_spot_pool_before_on_demand(server_factory: Any) -> None:
    server: Server = await server_factory(run_worker_in_server=False)
    store = server.services.store
    tight = await open_batch(server, "2m")
    other = Pool("spot-b", PoolKind.SPOT, Decimal("1.1"))
    pools = (SPOT, other)
    now = server.clock()
    await store.worker_seen("a-worker", "spot", "spot", now)
    await store.worker_seen("b-worker", "spot-b", "spot", now)
    on_demand = placement(server, ON_DEMAND, spot=pools)
    in_b = placement(server, other, spot=pools)
    assert await on_demand.allowed() == [] and await in_b.allowed() == [tight["id"]]

    # The first spot pool goes: the second still has spot, so on-demand still waits,
    # seeing the second pool's price.
    await store.worker_gone("a-worker")
    assert await on_demand.allowed() == []
    assert (await on_demand._market()).spot_price == Decimal("1.1")
    # Both gone: the tight batch (slack down to the reserve) goes on-demand.
    await store.worker_gone("b-worker")
    assert await on_demand.allowed() == [tight["id"]]


async def test_a_roomy_batch_waits_for_a_cheaper_spot_pool_that_had_spot_lately(
    server_factory: Any,
) -> None:
    server: Server = await server_factory(run_worker_in_server=False)
    store = server.services.store
    roomy = await open_batch(server, "24h")
    dear = Pool("spot-b", PoolKind.SPOT, Decimal("1.1"))
    pools = (SPOT, dear)
    now = server.clock()
    # Only the dearer pool's workers are there now; nothing is known of the last day.
    await store.worker_seen("b-worker", "spot-b", "spot", now)
    assert await placement(server, dear, spot=pools).allowed() == [roomy["id"]]

    # The server's samples show the cheaper pool with spot through the last day, up to
    # ten minutes ago: the batch, with a day to go, waits for it.
    await record(server, SPOT, 24, lambda m: m > 10)
    in_b = placement(server, dear, spot=pools)
    assert await in_b.allowed() == []
    assert "expected back" in in_b.reasons[roomy["id"]]
    # The cheaper pool's own workers take it.
    assert await placement(server, SPOT, spot=pools).allowed() == [roomy["id"]]


async def ran_one(server: Server, batch: dict[str, Any], pool: Pool) -> None:
    """One of the batch's requests run and charged on `pool`, now."""
    store, now = server.services.store, server.clock()
    lease = await store.lease(f"{pool.name}-worker", ["echo"], 1, now, 30, [batch["id"]])
    assert lease is not None
    answer = Outcome(200, {"choices": []})
    charge = Charge(pool.name, 1.0, Decimal("0.001"), Decimal("0.01"))
    await store.record(lease.id, Settlement([Result(lease.requests[0].id, answer, charge)]), now)


async def test_the_planner_is_told_where_each_batch_runs(server_factory: Any) -> None:
    server: Server = await server_factory(run_worker_in_server=False)
    store = server.services.store
    roomy, on_spot = await open_batch(server, "24h"), await open_batch(server, "24h")
    # Spot gone: a batch with a day's slack waits for it...
    on_demand = placement(server, ON_DEMAND)
    assert await on_demand.allowed() == []
    # ...unless it is on on-demand already: it keeps the warm instance.
    await ran_one(server, roomy, ON_DEMAND)
    assert await on_demand.allowed() == [roomy["id"]]
    assert "keeps the warm on-demand instance" in on_demand.reasons[roomy["id"]]

    # A dearer spot pool, and samples showing the cheaper one with spot all day: a
    # batch not yet running waits for the cheaper pool; one running on the dearer pool
    # carries on there.
    dear = Pool("spot-b", PoolKind.SPOT, Decimal("1.1"))
    await record(server, SPOT, 24, lambda m: m > 10)
    await store.worker_seen("b-worker", "spot-b", "spot", server.clock())
    in_b = placement(server, dear, spot=(SPOT, dear))
    assert await in_b.allowed() == []
    await ran_one(server, on_spot, dear)
    assert await in_b.allowed() == [on_spot["id"]]
    # Its pool gone, it is no longer running anywhere: it starts afresh where it goes.
    await store.worker_gone("b-worker")
    assert await placement(server, ON_DEMAND, spot=(SPOT, dear)).allowed() == [roomy["id"]]


async def test_drain_gives_the_unfinished_chunk_back_at_once(server_factory: Any) -> None:
    server: Server = await server_factory(
        run_worker_in_server=False, models=fake_models(latency_ms=5000)
    )
    svc = server.services
    batch = await server.submit([chat_line(i) for i in range(4)])
    await server.wait(batch["id"], lambda b: b["status"] == "in_progress")
    worker = Worker(svc.store, svc.engines, svc.clock, lease_size=4, poll_seconds=0.02)
    running = asyncio.create_task(worker.run())
    for _ in range(500):
        if worker._lease is not None:
            break
        await asyncio.sleep(0.01)
    assert worker._lease is not None  # the engine call (5 s) is under way
    started = time.monotonic()
    worker.drain(0.2)  # the notice: 0.2 s to finish, far less than the chunk needs
    await asyncio.wait_for(running, 5)
    assert time.monotonic() - started < 2
    [work] = await svc.store.open_work()
    assert work.requests == 4
    # Back in the queue now, not when the lease would have run out.
    again = await svc.store.lease("other", ["echo"], 10, svc.clock(), 30)
    assert again is not None and len(again.requests) == 4
    got = (await server.client.get(f"/v1/batches/{batch['id']}")).json()
    assert got["request_counts"]["completed"] == 0


async def test_dataset_jobs_are_placed_by_their_deadline_too(
    server_factory: Any, tmp_path: Any
) -> None:
    from tests.contract import classical
    from tests.integration.test_predictions_api import iris, write_table

    saved = classical.build(tmp_path / "models")
    server: Server = await server_factory(
        run_worker_in_server=False, models=[*fake_models(), iris(saved)]
    )
    svc = server.services
    table = tmp_path / "flowers.csv"
    write_table(table, saved)
    # Planned at 20 s a row (a slow model, until one is measured): 150 rows = 50 minutes;
    # the tight job's slack (about 5 minutes) is under the reserve of 2 restarts of 5.
    roomy = await svc.datasets.submit("p1", "iris", str(table), "id", window_seconds=86_400)
    tight = await svc.datasets.submit("p1", "iris", str(table), "id", window_seconds=3_300)
    assert 100 <= (tight.estimated_rows or 0) <= 200  # guessed from the CSV's size
    await svc.store.worker_seen("spot-worker", "spot", "spot", server.clock())
    slow = placement(server, ON_DEMAND, restart_seconds=300.0)
    slow.default_seconds = 20 / ROW_SHARE
    on_spot = placement(server, SPOT, restart_seconds=300.0)
    on_spot.default_seconds = 20 / ROW_SHARE
    # Spot is there, but the tight job cannot risk a preemption: it goes on-demand.
    assert await slow.allowed() == [tight.id], slow.reasons
    assert await on_spot.allowed() == [roomy.id], on_spot.reasons
    # A runner on the on-demand pool takes the job the planner placed there, only.
    svc.datasets.placement = slow
    assert await svc.datasets.run_due()
    assert (await svc.store.get_job("p1", tight.id)).status is JobStatus.COMPLETED
    assert (await svc.store.get_job("p1", roomy.id)).status is JobStatus.QUEUED
    assert not await svc.datasets.run_due()
