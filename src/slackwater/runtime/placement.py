"""Placement: which batches (and dataset jobs) a worker on a spot or on-demand pool may
lease now.

Each open batch is a planner Job: its unfinished requests times the seconds a request
takes (measured: the ledger's compute time per request of that model; until a model has
been measured, `seconds_per_request`, which errs towards on-demand), due at its
deadline. The planner's decision for it says where it runs: spot workers lease the
batches it sends to spot, on-demand workers only those it sends to on-demand (slack down
to the reserve, or spot gone or over its price ceiling). Spot counts as there while a
spot pool's feed offers it and a worker of that pool has been seen lately: with several
spot pools (zones, instance types, clouds), a batch the planner sends to spot runs in
whichever of them has it (the cheapest first, to on-demand workers' eyes), so work moves
to another spot pool when one goes before it falls back to on-demand. A batch with room
to wait may be left for a cheaper spot pool, gone for now, that the server's samples
show had spot often enough over the last day.

The planner is told where each batch has been running lately (the pool its latest
request was charged to, within two lease periods), as the simulator tells it: a batch on
on-demand keeps its warm instance through an outage and leaves it for spot only if the
run spot can be expected to give saves more than the restarts; one on spot is not held
back for a cheaper pool; one whose spot pool is gone starts afresh.

A model with a `batch_venue` (the same model at a provider's batch tier) may have a
batch's rest handed to the provider: when the planner says so, the batch's waiting
requests move to the venue model, and any worker may carry them (the provider does the
compute; the ledger charges the provider pool's price).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from slackwater.domain.model import Price
from slackwater.domain.pool import Pool, PoolKind
from slackwater.policy.planner import (
    Action,
    Job,
    Market,
    Policy,
    anywhere,
    mean_run_seconds,
    outages,
    returns_per_hour,
    spot_share,
)
from slackwater.ports import CapacityStore, Clock, PoolState, PriceFeed

WANTS = {PoolKind.SPOT: Action.SPOT, PoolKind.ON_DEMAND: Action.ON_DEMAND}
# How often the ledger is read again while a model with open work is not measured yet.
MEASURE_SECONDS = 2.0
# A table row of a classical model, until one has been measured, against a request's
# `seconds_per_request`: rows are predicted thousands at a time.
ROW_SHARE = 0.001
HISTORY_WINDOW = timedelta(hours=24)  # as the simulator's history (policy/simulate.py)
# How far back samples are read, so that a long outage that ended within the history
# window is measured whole (or nearly).
OUTAGE_LOOKBACK = 3 * HISTORY_WINDOW


@dataclass(frozen=True)
class Venue:
    """Where a model's batches can be handed: a provider batch model, its price and how
    long the provider may take."""

    model: str
    price: Price
    turnaround_seconds: float


class Placement:
    def __init__(
        self,
        store: CapacityStore,
        pool: Pool,
        feed: PriceFeed,
        clock: Clock,
        policy: Policy,
        *,
        spot_feeds: Mapping[str, PriceFeed],
        on_demand_price: Decimal,
        on_demand_pools: Collection[str],
        restart_seconds: float,
        tick_seconds: float,
        max_spot_price: Decimal | None = None,
        refresh_seconds: float = 2.0,
        alive_seconds: float = 30.0,
        default_seconds_per_request: float = 1.0,
        venues: Mapping[str, Venue] | None = None,
    ) -> None:
        if pool.kind not in WANTS:
            raise ValueError(f"pool {pool.name!r} ({pool.kind}) is not placed by the planner")
        self.store = store
        self.pool = pool
        self.feed = feed
        # A spot worker answers for its own pool; an on-demand one looks at them all.
        self.spot_feeds = {pool.name: feed} if pool.kind is PoolKind.SPOT else dict(spot_feeds)
        # Every spot pool, for what is cheaper than where spot would run.
        self.every_spot = {**spot_feeds, **self.spot_feeds}
        self.clock = clock
        self.policy = policy
        self.on_demand_price = on_demand_price
        self.on_demand_pools = frozenset(on_demand_pools)
        self.restart_seconds = restart_seconds
        self.tick_seconds = tick_seconds
        self.max_spot_price = max_spot_price
        self.refresh_seconds = refresh_seconds
        self.measure_seconds = MEASURE_SECONDS
        self.alive = timedelta(seconds=alive_seconds)
        self.default_seconds = default_seconds_per_request
        self.venues = dict(venues or {})  # model -> where its batches can be handed
        self._tokens: dict[str, tuple[float, float]] = {}  # model -> (in, out) per request
        self._allowed: list[str] = []
        self._at = float("-inf")
        self.reasons: dict[str, str] = {}  # batch -> why, as last decided
        self._speed: dict[str, float] = {}
        self._speed_at = float("-inf")
        self._seen: dict[str, list[tuple[datetime, bool]]] = {}
        # Of spot in any spot pool, as last read: how often it came back, how long its
        # runs and its outages lasted, when the outage going on began.
        self._returns: float | None = None
        self._mean_run: float | None = None
        self._outages: tuple[float, ...] = ()
        self._gone_since: datetime | None = None
        self._seen_at = float("-inf")

    async def allowed(self) -> list[str]:
        """The batches this pool's workers may lease now (decided at most every refresh)."""
        if time.monotonic() - self._at < self.refresh_seconds:
            return self._allowed
        now = self.clock()
        market = await self._market()
        open_work = await self.store.open_work()
        speed = await self._speeds({work.model for work in open_work})
        remaining: dict[str, float] = defaultdict(float)
        deadlines: dict[str, datetime] = {}
        waiting: dict[str, dict[str, int]] = defaultdict(dict)  # batch -> model -> requests
        handed: set[str] = set()  # batches (partly) at a provider already
        at_provider = {venue.model for venue in self.venues.values()}
        for work in open_work:
            if work.model in at_provider:
                handed.add(work.batch_id)
                continue
            waiting[work.batch_id][work.model] = work.requests
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
        ran_in = await self.store.running_in(now - self.alive) if remaining else {}
        allowed, reasons = [], {}
        for batch_id, seconds in remaining.items():
            provider = self._provider(waiting.get(batch_id, {}))
            job = Job(
                id=batch_id,
                arrival=now,
                deadline=deadlines[batch_id],
                total_seconds=seconds,
                remaining_seconds=seconds,
                running=self._running(ran_in.get(batch_id), market),
                provider_cost=provider[0] if provider else None,
            )
            offered = market
            if provider is not None:
                offered = replace(market, provider_turnaround_seconds=provider[1])
            decision = self.policy.decide(job, offered, now)
            reasons[batch_id] = f"{decision.action}: {decision.reason}"
            if decision.action is Action.PROVIDER_BATCH:
                for model in waiting[batch_id]:
                    await self.store.reroute(batch_id, model, self.venues[model].model)
                handed.add(batch_id)
            elif decision.action is WANTS[self.pool.kind]:
                allowed.append(batch_id)
        allowed.extend(sorted(handed - set(allowed)))
        self._allowed, self.reasons, self._at = allowed, reasons, time.monotonic()
        return allowed

    def _running(self, pool: str | None, market: Market) -> Action:
        """Where a batch runs, from the pool of its latest request: spot while spot is
        still there (gone, the batch was preempted and starts afresh wherever it goes),
        on-demand, or nowhere (it has waited, or runs at a provider or locally)."""
        if pool in self.every_spot:
            return Action.SPOT if market.spot_available else Action.HOLD
        if pool in self.on_demand_pools:
            return Action.ON_DEMAND
        return Action.HOLD

    def _provider(self, waiting: dict[str, int]) -> tuple[Decimal, float] | None:
        """What the provider would charge for a batch's waiting requests, and how long it
        may take; None unless every one of its models has a venue and measured tokens."""
        if not waiting:
            return None
        cost, turnaround = Decimal(0), 0.0
        for model, count in waiting.items():
            venue, tokens = self.venues.get(model), self._tokens.get(model)
            if venue is None or tokens is None:
                return None
            cost += venue.price.cost(round(tokens[0] * count), round(tokens[1] * count))
            turnaround = max(turnaround, venue.turnaround_seconds)
        return cost, turnaround

    async def _speeds(self, models: set[str]) -> dict[str, float]:
        """Seconds per request of each model, from the ledger: re-read every minute, or
        every few seconds while a model with open work has not been measured yet."""
        stale = time.monotonic() - self._speed_at
        if stale > 60 or (stale > self.measure_seconds and not models <= self._speed.keys()):
            rows = await self.store.ledger("model")
            self._speed = {r.key: r.compute_seconds / r.requests for r in rows if r.requests}
            self._tokens = {
                r.key: (r.prompt_tokens / r.requests, r.completion_tokens / r.requests)
                for r in rows
                if r.requests
            }
            self._speed_at = time.monotonic()
        return self._speed

    async def _seen_lately(self, now: datetime) -> dict[str, list[tuple[datetime, bool]]]:
        """Each spot pool's availability over the last day, from the samples the server
        records of every feed (oldest first); of spot in any of them, how often it came
        back over the last day and how long its runs lasted, how long the outages that
        ended in it lasted (read from further back, to measure them whole), and since when
        it has been gone; re-read every minute."""
        if time.monotonic() - self._seen_at > 60:
            seen: dict[str, list[tuple[datetime, bool]]] = defaultdict(list)
            for sample in await self.store.pool_samples(now - OUTAGE_LOOKBACK):
                if sample.pool in self.every_spot:
                    seen[sample.pool].append((sample.at, sample.available))
            since = now - HISTORY_WINDOW
            # The last day only is kept: the cheaper-pool share merges it every refresh.
            day = {name: [s for s in samples if s[0] >= since] for name, samples in seen.items()}
            self._seen, self._seen_at = day, time.monotonic()
            spot = anywhere(list(day.values()))
            self._returns = returns_per_hour(spot)
            self._mean_run = mean_run_seconds(spot, now)
            self._outages, self._gone_since = outages(anywhere(list(seen.values())), since)
        return self._seen

    async def _market(self) -> Market:
        """Spot as the cheapest spot pool that has it now (a pool has it while its feed
        offers it and its workers are alive); how often spot, gone from every spot pool,
        came back over the last day (a batch may run on any of them), its runs and
        outages then and how long it has been gone now; how much of the last day pools
        cheaper than that one had spot."""
        now = self.clock()
        states: dict[str, PoolState] = {}
        there: list[PoolState] = []
        for name, feed in self.spot_feeds.items():
            state = states[name] = await feed.state(now)
            live = name == self.pool.name or (
                await self.store.live_workers(name, now - self.alive) > 0
            )
            if state.available and live:
                there.append(state)
        best = min(there or states.values(), key=lambda s: s.price_per_hour, default=None)
        seen = await self._seen_lately(now)
        share = None
        if there and best is not None:
            for name, feed in self.every_spot.items():
                if name not in states:  # the other pools, asked only when needed
                    states[name] = await feed.state(now)
            cheaper = [
                seen.get(name, [])
                for name, state in states.items()
                if state.price_per_hour < best.price_per_hour
            ]
            if cheaper:
                share = spot_share(anywhere(cheaper), now - HISTORY_WINDOW, now)
        # The run to expect is that of spot in any pool, as the simulator's; until one
        # has begun in the samples, what the cheapest pool's feed says of its own.
        mean_run = self._mean_run
        if mean_run is None and best is not None:
            mean_run = best.mean_uptime_seconds
        gone = None
        if not there and self._gone_since is not None:
            gone = (now - self._gone_since).total_seconds()
        return Market(
            spot_runs_per_hour=self._returns,
            spot_gone_seconds=gone,
            outage_seconds=self._outages,
            cheaper_spot_share=share,
            spot_available=bool(there),
            spot_price=best.price_per_hour if best is not None else self.on_demand_price,
            on_demand_price=self.on_demand_price,
            tick_seconds=self.tick_seconds,
            restart_seconds=self.restart_seconds,
            max_spot_price=self.max_spot_price,
            spot_mean_uptime_seconds=mean_run,
        )
