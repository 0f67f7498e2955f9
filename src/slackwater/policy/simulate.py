"""Simulator: replay a workload against spot traces through the Planner, in simulated time.

Model (the same one `optimum.py` solves exactly): time moves in the traces' ticks; each
job runs on its own instance; a spot pool has an instance in a tick where its trace's
capacity is > 0, for the whole tick; on-demand is always there; work and restart time
are rounded up to whole ticks; an instance is billed per tick it runs, and spot lost to
a preemption must restart. With several spot pools (zones, instance types, clouds) a
job stays on its pool while it has spot; preempted, it fails over to the cheapest pool
that has spot now (a restart), which the policy sees as spot still being there.
Everything here is pure: traces come in as lists.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from slackwater.domain.errors import ConfigError
from slackwater.domain.money import NANO
from slackwater.domain.pool import Trace
from slackwater.policy.optimum import optimal_cost_pools
from slackwater.policy.planner import HOUR, Action, Job, Market, Policy

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class WorkloadJob:
    id: str
    arrival_seconds: float  # from the start of the trace
    work_seconds: float  # compute on one instance at batch throughput
    window_seconds: float  # the completion window: deadline = arrival + window


@dataclass(frozen=True)
class Prices:
    spot_per_hour: Decimal = Decimal("0.918")  # AWS p3.2xlarge (1 V100) spot, typical
    on_demand_per_hour: Decimal = Decimal("3.06")  # AWS p3.2xlarge on-demand
    restart_seconds: float = 300.0  # start an instance and load the model
    # Realtime serving handles one request at a time: this many times slower than full
    # batches on the same instance (bench/cost.py measures it), billed on-demand.
    realtime_slowdown: float = 6.0
    max_spot_price: Decimal | None = None
    # A provider's batch tier, $ per instance-hour of work it takes off our hands (its
    # token price times the instance's batch throughput); None: not offered.
    provider_per_hour: Decimal | None = None
    provider_turnaround_seconds: float = 24 * 3600.0


@dataclass
class JobResult:
    id: str
    cost: Decimal = Decimal(0)
    missed: bool = False
    feasible: bool = True


@dataclass(frozen=True)
class SimResult:
    policy: str
    cost: Decimal
    missed: int  # deadlines missed
    missed_feasible: int  # ... of jobs on-demand alone could have finished in time
    jobs: list[JobResult]


def tick_cost(price_per_hour: Decimal, tick_seconds: float) -> Decimal:
    return (price_per_hour * Decimal(str(tick_seconds)) / HOUR).quantize(NANO)


def default_workload(trace: Trace, seed: int = 7, jobs: int = 40) -> list[WorkloadJob]:
    """The documented default: `jobs` batches over the trace's length.

    Completion windows of 12, 24 or 48 hours; each batch needs 20% to 70% of its window
    on one instance (so a batch always could finish on on-demand alone); arrivals spread
    evenly over the trace, leaving room for the last window.
    """
    rng = random.Random(seed)
    span = len(trace) * trace.tick_seconds
    windows = [12 * 3600.0, 24 * 3600.0, 48 * 3600.0]
    room = max(0.0, span - max(windows))
    out = []
    for i in range(jobs):
        window = rng.choice(windows)
        out.append(
            WorkloadJob(
                id=f"job-{i:03d}",
                arrival_seconds=room * i / max(1, jobs - 1),
                work_seconds=window * rng.uniform(0.2, 0.7),
                window_seconds=window,
            )
        )
    return out


class SpotHistory:
    """What an online policy may know at tick t: the trace up to t, in a trailing window."""

    def __init__(self, trace: Trace, window_hours: float = 24.0) -> None:
        up = [1 if c > 0 else 0 for c in trace.capacity]
        self.up_sum = [0]
        self.starts = [0]
        # Outages: runs of ticks without spot, and the tick spot came back after each.
        self.gone_since: list[int | None] = []
        self.outage_starts: list[int] = []
        self.outage_ends: list[int] = []
        since: int | None = None
        for i, u in enumerate(up):
            self.up_sum.append(self.up_sum[-1] + u)
            self.starts.append(self.starts[-1] + (1 if u and (i == 0 or not up[i - 1]) else 0))
            if u:
                if since is not None:
                    self.outage_starts.append(since)
                    self.outage_ends.append(i)
                since = None
            elif since is None:
                since = i
            self.gone_since.append(since)
        self.window = max(1, round(window_hours * 3600 / trace.tick_seconds))
        self.tick = trace.tick_seconds
        self._outages: dict[int, tuple[float, ...]] = {}

    def runs_per_hour(self, t: int) -> float | None:
        """How often spot came back, over the window before tick t (None: under an hour
        seen, too little to say, as workers judge the feed's samples)."""
        lo = max(0, t - self.window)
        if (t - lo) * self.tick < 3600:
            return None
        return (self.starts[t] - self.starts[lo]) / ((t - lo) * self.tick) * 3600

    def mean_uptime(self, t: int) -> float | None:
        """The mean spot run, in seconds, over the window before tick t."""
        lo = max(0, t - self.window)
        runs = self.starts[t] - self.starts[lo]
        return (self.up_sum[t] - self.up_sum[lo]) / runs * self.tick if runs else None

    def gone(self, t: int) -> float | None:
        """How long spot has been gone at tick t, in seconds (None: it is there)."""
        since = self.gone_since[t]
        return None if since is None else (t - since) * self.tick

    def outages(self, t: int) -> tuple[float, ...]:
        """How long each outage that ended in the window before tick t lasted."""
        if t not in self._outages:
            first = bisect.bisect_right(self.outage_ends, t - self.window)
            last = bisect.bisect_right(self.outage_ends, t)
            self._outages[t] = tuple(
                (end - start) * self.tick
                for start, end in zip(
                    self.outage_starts[first:last], self.outage_ends[first:last], strict=True
                )
            )
        return self._outages[t]

    def share(self, t: int) -> float | None:
        """The share of the window before tick t with spot (None: under an hour)."""
        lo = max(0, t - self.window)
        if (t - lo) * self.tick < 3600:
            return None
        return (self.up_sum[t] - self.up_sum[lo]) / (t - lo)


class Histories:
    """What an online policy may know of several pools at tick t: the history of spot
    in any of a set of them (as `planner.anywhere` builds online; one pool's own)."""

    def __init__(self, traces: Sequence[Trace], prices: Prices, window_hours: float) -> None:
        self.traces = traces
        self.prices = prices
        self.window_hours = window_hours
        self._anywhere: dict[frozenset[int], SpotHistory] = {}

    def anywhere(self, pools: frozenset[int]) -> SpotHistory:
        if pools not in self._anywhere:
            capacity = [
                int(any(self.traces[i].capacity[t] > 0 for i in pools))
                for t in range(len(self.traces[0]))
            ]
            union = replace(self.traces[0], capacity=capacity, spot_prices=None)
            self._anywhere[pools] = SpotHistory(union, self.window_hours)
        return self._anywhere[pools]

    @property
    def anywhere_all(self) -> SpotHistory:
        """Spot in any pool: a job whose pool goes fails over to another, so its runs
        on spot and its trips to on-demand and back are those of spot anywhere."""
        return self.anywhere(frozenset(range(len(self.traces))))

    def cheaper_share(self, t: int, price: Decimal) -> float | None:
        """How much of the window some pool cheaper than `price` at t had spot."""
        cheaper = frozenset(
            i for i, trace in enumerate(self.traces) if _spot_price(trace, self.prices, t) < price
        )
        return self.anywhere(cheaper).share(t) if cheaper else None


Pools = Trace | Sequence[Trace]  # one spot pool, or several on the same ticks


def spot_pools(pools: Pools) -> list[Trace]:
    """Several traces as pools on one clock: the same tick, cut to the shortest."""
    traces = [pools] if isinstance(pools, Trace) else list(pools)
    if not traces:
        raise ConfigError("no spot trace given")
    ticks = {t.tick_seconds for t in traces}
    if len(ticks) > 1:
        shown = ", ".join(f"{t.name} ({t.tick_seconds:g} s)" for t in traces)
        raise ConfigError(f"spot traces side by side need the same tick; got {shown}")
    shortest = min(len(t) for t in traces)
    return [
        t
        if len(t) == shortest
        else replace(
            t,
            capacity=t.capacity[:shortest],
            spot_prices=t.spot_prices[:shortest] if t.spot_prices is not None else None,
        )
        for t in traces
    ]


def simulate(
    workload: Sequence[WorkloadJob],
    pools: Pools,
    prices: Prices,
    policy: Policy,
    *,
    history_hours: float = 24.0,
) -> SimResult:
    traces = spot_pools(pools)
    histories = Histories(traces, prices, history_hours)
    results = [_run(job, traces, prices, policy, histories) for job in workload]
    return _summary(policy.name, results)


def _summary(name: str, results: list[JobResult]) -> SimResult:
    return SimResult(
        policy=name,
        cost=sum((r.cost for r in results), Decimal(0)),
        missed=sum(r.missed for r in results),
        missed_feasible=sum(r.missed and r.feasible for r in results),
        jobs=results,
    )


def _ticks(trace: Trace, seconds: float) -> int:
    return math.ceil(seconds / trace.tick_seconds - 1e-9)


def _span(job: WorkloadJob, trace: Trace) -> tuple[int, int]:
    start = _ticks(trace, job.arrival_seconds)
    end = min(len(trace), start + int(job.window_seconds // trace.tick_seconds))
    return start, end


def _spot_price(trace: Trace, prices: Prices, t: int) -> Decimal:
    return trace.spot_prices[t] if trace.spot_prices is not None else prices.spot_per_hour


def _cheapest(traces: Sequence[Trace], prices: Prices, t: int) -> int | None:
    """The pool with spot at tick t at the lowest price, if any has it."""
    up = [i for i, trace in enumerate(traces) if trace.capacity[t] > 0]
    return min(up, key=lambda i: _spot_price(traces[i], prices, t)) if up else None


def _run(
    job: WorkloadJob,
    traces: Sequence[Trace],
    prices: Prices,
    policy: Policy,
    histories: Histories,
) -> JobResult:
    first = traces[0]
    tick = first.tick_seconds
    start, end = _span(job, first)
    work = _ticks(first, job.work_seconds)
    restart = _ticks(first, prices.restart_seconds)
    result = JobResult(job.id, feasible=work + restart <= end - start)
    demand_tick = tick_cost(prices.on_demand_per_hour, tick)
    provider = (
        prices.provider_per_hour * Decimal(work * tick) / HOUR
        if prices.provider_per_hour is not None
        else None
    )
    running, warm, left = Action.HOLD, 0, work
    pool: int | None = None  # the spot pool it runs on
    arrival = EPOCH + timedelta(seconds=start * tick)
    deadline = EPOCH + timedelta(seconds=end * tick)
    for t in range(start, end):
        if left == 0:
            break
        if running is Action.SPOT and pool is not None and not traces[pool].capacity[t] > 0:
            running, warm = Action.HOLD, 0  # preempted: the instance and its warm-up are gone
        # Where spot would run: on its own pool while that has spot, else the cheapest.
        here = pool if running is Action.SPOT else _cheapest(traces, prices, t)
        quoted = (
            _spot_price(traces[here], prices, t)
            if here is not None
            else min(_spot_price(trace, prices, t) for trace in traces)
        )
        market = Market(
            spot_available=here is not None,
            spot_price=quoted,
            on_demand_price=prices.on_demand_per_hour,
            tick_seconds=tick,
            restart_seconds=restart * tick,
            max_spot_price=prices.max_spot_price,
            spot_mean_uptime_seconds=histories.anywhere_all.mean_uptime(t),
            spot_runs_per_hour=histories.anywhere_all.runs_per_hour(t),
            spot_gone_seconds=histories.anywhere_all.gone(t) if here is None else None,
            outage_seconds=histories.anywhere_all.outages(t) if here is None else (),
            cheaper_spot_share=histories.cheaper_share(t, quoted) if here is not None else None,
            provider_turnaround_seconds=(
                prices.provider_turnaround_seconds if provider is not None else None
            ),
        )
        view = Job(
            id=job.id,
            arrival=arrival,
            deadline=deadline,
            total_seconds=work * tick,
            remaining_seconds=left * tick,
            running=running,
            warmup_seconds=warm * tick,
            provider_cost=provider,
        )
        action = policy.decide(view, market, EPOCH + timedelta(seconds=t * tick)).action
        if action is Action.PROVIDER_BATCH:
            assert provider is not None
            result.cost += provider
            left = 0
            break
        if action is Action.HOLD:
            running, warm = Action.HOLD, 0
            continue
        if action is Action.SPOT and here is None:
            raise ValueError(f"policy {policy.name} ran {job.id} on spot at tick {t}: none there")
        if action is not running:
            running, warm = action, restart
        if action is Action.SPOT:
            pool = here
        result.cost += tick_cost(quoted, tick) if action is Action.SPOT else demand_tick
        if warm:
            warm -= 1
        else:
            left -= 1
    result.missed = left > 0
    return result


def optimum(workload: Sequence[WorkloadJob], pools: Pools, prices: Prices) -> SimResult:
    """The offline optimum of each job, knowing the traces (see optimum.py)."""
    traces = spot_pools(pools)
    first = traces[0]
    results = []
    tick = first.tick_seconds
    restart = _ticks(first, prices.restart_seconds)
    for job in workload:
        start, end = _span(job, first)
        work = _ticks(first, job.work_seconds)
        result = JobResult(job.id, feasible=work + restart <= end - start)
        best = optimal_cost_pools(
            [
                (
                    [c > 0 for c in trace.capacity[start:end]],
                    [tick_cost(_spot_price(trace, prices, t), tick) for t in range(start, end)],
                )
                for trace in traces
            ],
            tick_cost(prices.on_demand_per_hour, tick),
            work,
            restart,
        )
        if prices.provider_per_hour is not None and (end - start) * tick >= (
            prices.provider_turnaround_seconds
        ):
            provider = prices.provider_per_hour * Decimal(work * tick) / HOUR
            best = provider if best is None else min(best, provider)
        result.missed = best is None
        result.cost = best or Decimal(0)
        results.append(result)
    return _summary("optimum", results)


def realtime(workload: Sequence[WorkloadJob], pools: Pools, prices: Prices) -> SimResult:
    """Everything served in real time: one request at a time, on on-demand, at once."""
    trace = spot_pools(pools)[0]
    slow = Decimal(str(prices.realtime_slowdown))
    results = [
        JobResult(
            job.id,
            cost=prices.on_demand_per_hour
            * Decimal(_ticks(trace, job.work_seconds) * trace.tick_seconds)
            * slow
            / HOUR,
        )
        for job in workload
    ]
    return _summary("realtime", results)


def parse_workload(document: object, source: str) -> list[WorkloadJob]:
    """A workload file: {"jobs": [{"arrival_hours", "work_hours", "window_hours", "id"?}]}."""
    jobs = document.get("jobs") if isinstance(document, dict) else None
    if not isinstance(jobs, list) or not jobs:
        raise ConfigError(f"workload {source}: field jobs must be a non-empty list")
    out = []
    for i, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise ConfigError(f"workload {source}: jobs[{i}] is not an object")
        hours = {}
        for name in ("arrival_hours", "work_hours", "window_hours"):
            value = job.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(
                    f"workload {source}: jobs[{i}].{name} must be a number >= 0, got {value!r}"
                )
            hours[name] = float(value) * 3600
        if hours["work_hours"] <= 0 or hours["window_hours"] <= 0:
            raise ConfigError(f"workload {source}: jobs[{i}] needs work and a window over 0")
        out.append(
            WorkloadJob(
                id=str(job.get("id", f"job-{i:03d}")),
                arrival_seconds=hours["arrival_hours"],
                work_seconds=hours["work_hours"],
                window_seconds=hours["window_hours"],
            )
        )
    return out


@dataclass(frozen=True)
class Comparison:
    """Every policy, the realtime and optimum baselines, on one workload and trace."""

    jobs: int
    feasible: int
    results: dict[str, SimResult]

    def ratio(self, name: str) -> float | None:
        best = self.results["optimum"].cost
        return float(self.results[name].cost / best) if best else None


def compare(
    workload: Sequence[WorkloadJob], pools: Pools, prices: Prices, policies: Sequence[Policy]
) -> Comparison:
    traces = spot_pools(pools)
    results = {"realtime": realtime(workload, traces, prices)}
    for chosen in policies:
        results[chosen.name] = simulate(workload, traces, prices, chosen)
    results["optimum"] = optimum(workload, traces, prices)
    feasible = sum(j.feasible for j in results["optimum"].jobs)
    return Comparison(jobs=len(workload), feasible=feasible, results=results)
