"""Planner: where each job's pending work runs next, from its deadline and the market.

A job is the pending work of one batch, measured in seconds of compute on one instance.
Each tick the planner picks an action per job: run on spot, run on on-demand, hold (pay
nothing, wait for spot to come back or its price to fall), or hand the rest to a
provider's batch tier. Starting an instance costs `restart_seconds` (boot, load the
model) before any progress is made.

Every policy keeps one invariant, which is why no feasible deadline is missed: unless a
job is already on on-demand, the time left after this tick covers its remaining work
plus one restart, so on-demand can always still finish it.

Policies (compared in `slackwater sim` against the offline optimum):
- `on_demand`: always on-demand.
- `greedy`: spot whenever it is there; wait while it is not, until the slack runs out;
  then on-demand to the end (the "Greedy" policy of "Can't Be Late", NSDI'24).
- `uniform_progress`: spot whenever it is there; on-demand only while behind the straight
  line from arrival to deadline (the paper's "Uniform Progress").
- `slack_reserve` (what workers use): waits for spot like greedy, but goes on-demand
  while a reserve of slack is still left, so it can go back to spot when spot returns
  and the run it can expect saves more than the restarts cost. The reserve is learned
  from the trace it is on: a few restarts for each time spot can be expected to come
  back (at the rate seen lately) before the job is done. It does not spend the slack
  on the first outages either: each outage is waited out only so long that the
  outages expected before the deadline, as long as the last day's were, fit the slack
  beyond the reserve; past that it goes on-demand, and back to spot when spot returns.
  With several spot pools it waits for a cheaper pool rather than start on a dearer
  one while the spot the cheaper pools had over the last day, over the time left,
  covers the work with room to spare.
  It pauses while the spot price is over a ceiling, and hands a job to a provider's
  batch tier when that is cheaper than even pure spot, or, with spot gone and the slack
  down to the reserve, when it is cheaper than on-demand and its turnaround still fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise
from typing import Protocol

HOUR = Decimal(3600)


class Action(StrEnum):
    HOLD = "hold"
    SPOT = "spot"
    ON_DEMAND = "on_demand"
    PROVIDER_BATCH = "provider_batch"


@dataclass(frozen=True)
class Job:
    id: str
    arrival: datetime
    deadline: datetime
    total_seconds: float  # compute on one instance, at batch throughput
    remaining_seconds: float
    running: Action = Action.HOLD  # where it ran during the last tick
    warmup_seconds: float = 0.0  # restart time still to go where it runs
    provider_cost: Decimal | None = None  # the rest at a provider's batch price

    @property
    def done_seconds(self) -> float:
        return self.total_seconds - self.remaining_seconds


@dataclass(frozen=True)
class Market:
    spot_available: bool
    spot_price: Decimal  # $/hour now
    on_demand_price: Decimal  # $/hour
    tick_seconds: float  # how long a decision holds
    restart_seconds: float = 0.0
    max_spot_price: Decimal | None = None  # hold while spot costs more, if slack allows
    # Mean length of a spot run seen so far (None: nothing seen yet); what switching
    # back to spot can expect to gain. With several pools, of spot in any of them: a job
    # fails over between them.
    spot_mean_uptime_seconds: float | None = None
    # How often spot, gone from every spot pool, has come back lately (runs per hour;
    # None: not known yet): the round trips to on-demand and back a job may make.
    spot_runs_per_hour: float | None = None
    # The share of the last day in which a spot pool cheaper than the quoted one had
    # spot (None: no pool is cheaper, or too little has been seen to say).
    cheaper_spot_share: float | None = None
    # How long spot has been gone from every spot pool (None: it is there, or not
    # known), and how long each such outage that ended over the last day lasted.
    spot_gone_seconds: float | None = None
    outage_seconds: tuple[float, ...] = ()
    provider_turnaround_seconds: float | None = None  # None: no provider batch tier


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


Seen = Sequence[tuple[datetime, bool]]  # samples of spot availability, oldest first


def anywhere(pools: Sequence[Seen]) -> list[tuple[datetime, bool]]:
    """Whether any of these pools had spot, at each moment one of them was sampled (a
    pool's sample holds until its next one). Before a pool's first sample its state is
    unknown, not "no spot": until every pool has been sampled, a moment counts only if a
    pool known so far had spot. (Servers sample their feeds at different moments, so
    each pool's samples in a window begin at a different moment; counting the pools not
    seen yet as without spot made a spurious outage, and a return, at the window's
    start.)"""
    state: list[bool | None] = [None] * len(pools)
    out: list[tuple[datetime, bool]] = []
    for at, i, up in sorted((at, i, up) for i, seen in enumerate(pools) for at, up in seen):
        state[i] = up
        there = any(state)
        if not there and None in state:
            continue  # no pool seen so far has spot, and one not seen yet might
        if out and out[-1][0] == at:
            out[-1] = (at, there)  # pools sampled at the same moment: one sample
        else:
            out.append((at, there))
    return out


def returns_per_hour(seen: Seen) -> float | None:
    """How often spot came back: the runs that began within these samples of a pool's
    availability, per hour they span. None: under an hour seen, too little to say."""
    if len(seen) < 2:
        return None
    span = (seen[-1][0] - seen[0][0]).total_seconds()
    if span < 3600:
        return None
    return _runs_begun(seen) / span * 3600


def _runs_begun(seen: Seen) -> int:
    """How many spot runs began within these samples (one under way at the first
    sample began before them)."""
    return sum(up and not before for (_, before), (_, up) in pairwise(seen))


def _seconds_with_spot(seen: Seen, since: datetime, until: datetime) -> float:
    """The time from `since` to `until` in which the samples say spot was there (a
    sample holds until the next, the last until `until`)."""
    return sum(
        (after - max(at, since)).total_seconds()
        for (at, up), (after, _) in pairwise([*seen, (until, False)])
        if up and after > since
    )


def mean_run_seconds(seen: Seen, until: datetime) -> float | None:
    """The mean length of a spot run, from samples of its availability: the time with
    spot (a sample holds until the next, the last until `until`) over the runs that
    began within the samples. None: no run began in them."""
    starts = _runs_begun(seen)
    if not starts:
        return None
    return _seconds_with_spot(seen, seen[0][0], until) / starts


def outages(seen: Seen, since: datetime) -> tuple[tuple[float, ...], datetime | None]:
    """From samples of spot's availability: how long each outage that ended from `since`
    on lasted (seconds, from its first sample without spot, as far back as the samples
    go, to the next sample with it), and when the one still going began (None: spot is
    there, or nothing was sampled)."""
    ended: list[float] = []
    began: datetime | None = None
    for at, up in seen:
        if up:
            if began is not None and at >= since:
                ended.append((at - began).total_seconds())
            began = None
        elif began is None:
            began = at
    return tuple(ended), began


def wait_limit(seen: Sequence[float], expected: float, budget: float) -> float:
    """The longest wait per outage such that `expected` outages, with lengths drawn
    from those `seen` and each waited out for at most that long, spend at most `budget`
    seconds waiting in all (infinite: every outage can be waited out)."""
    lengths = sorted(seen)
    if not lengths or expected * sum(lengths) / len(lengths) <= budget:
        return math.inf
    if budget <= 0:
        return 0.0
    # With a wait of w, each outage costs min(length, w): spend the per-outage budget
    # on the short outages whole, then share what is left among the longer ones.
    each = budget / expected * len(lengths)  # the waiting allowed, summed over `lengths`
    spent = 0.0
    for k, length in enumerate(lengths):
        longer = len(lengths) - k
        if spent + length * longer > each:
            return (each - spent) / longer
        spent += length
    return math.inf


def spot_share(seen: Seen, since: datetime, until: datetime) -> float | None:
    """The share of the time from `since` (or the first sample, if later) to `until` in
    which the pool had spot, from samples of its availability (a sample holds until
    the next). None: under an hour seen, too little to say."""
    seen = [(at, up) for at, up in seen if at <= until]
    if not seen or (until - max(since, seen[0][0])).total_seconds() < 3600:
        return None
    return _seconds_with_spot(seen, since, until) / (until - max(since, seen[0][0])).total_seconds()


class Policy(Protocol):
    name: str

    def decide(self, job: Job, market: Market, now: datetime) -> Decision: ...


def _left(job: Job, now: datetime) -> float:
    return (job.deadline - now).total_seconds()


def _overhead(job: Job, action: Action, market: Market) -> float:
    return job.warmup_seconds if job.running is action else market.restart_seconds


def _spare(job: Job, market: Market, now: datetime, progress: float = 0.0) -> float:
    """The slack left after this tick, with `progress` made in it: time beyond what
    on-demand, restarted, needs to finish."""
    after = _left(job, now) - market.tick_seconds
    return after - (job.remaining_seconds - progress) - market.restart_seconds


def safe(job: Job, action: Action, market: Market, now: datetime, extra: float = 0.0) -> bool:
    """After a tick of `action`, on-demand (with a restart) can still meet the deadline."""
    if action is Action.ON_DEMAND:
        return _left(job, now) >= job.remaining_seconds + _overhead(job, action, market)
    progress = 0.0
    if action is Action.SPOT:
        progress = max(0.0, market.tick_seconds - _overhead(job, action, market))
    return _spare(job, market, now, progress) >= extra


def spot_usable(market: Market) -> bool:
    if not market.spot_available or market.spot_price >= market.on_demand_price:
        return False
    return market.max_spot_price is None or market.spot_price <= market.max_spot_price


def _wait_or_fall_back(job: Job, market: Market, now: datetime, why: str) -> Decision:
    if safe(job, Action.HOLD, market, now):
        return Decision(Action.HOLD, f"{why}; slack remains, waiting")
    return Decision(Action.ON_DEMAND, f"{why}; slack is used up, on-demand to meet the deadline")


class OnDemand:
    name = "on_demand"

    def decide(self, job: Job, market: Market, now: datetime) -> Decision:
        return Decision(Action.ON_DEMAND, "always on-demand")


class Greedy:
    name = "greedy"

    def decide(self, job: Job, market: Market, now: datetime) -> Decision:
        if job.running is Action.ON_DEMAND:
            return Decision(Action.ON_DEMAND, "stays on on-demand once there")
        if spot_usable(market) and safe(job, Action.SPOT, market, now):
            return Decision(Action.SPOT, "spot is available")
        return _wait_or_fall_back(job, market, now, "no spot")


class UniformProgress:
    name = "uniform_progress"

    def decide(self, job: Job, market: Market, now: datetime) -> Decision:
        if spot_usable(market) and safe(job, Action.SPOT, market, now):
            return Decision(Action.SPOT, "spot is available")
        window = (job.deadline - job.arrival).total_seconds()
        elapsed = (now - job.arrival).total_seconds() + market.tick_seconds
        expected = job.total_seconds * min(1.0, elapsed / window) if window > 0 else 0.0
        if job.done_seconds < expected:
            return Decision(Action.ON_DEMAND, "behind uniform progress")
        return _wait_or_fall_back(job, market, now, "no spot, ahead of uniform progress")


class SlackReserve:
    name = "slack_reserve"

    def __init__(
        self,
        reserve_restarts: float = 4.0,
        cycle_restarts: float = 4.0,
        cheaper_pool_margin: float = 1.5,
        outage_wait_factor: float = 4.0,
    ) -> None:
        # All tuned on the Feb 2023 availability traces, checked on the Apr 2023
        # preemption traces (docs/capacity.md).
        self.reserve_restarts = reserve_restarts
        self.cycle_restarts = cycle_restarts
        self.cheaper_pool_margin = cheaper_pool_margin
        self.outage_wait_factor = outage_wait_factor

    def decide(self, job: Job, market: Market, now: datetime) -> Decision:
        provider = self._provider(job, market, now)
        if provider is not None:
            return provider
        if spot_usable(market) and safe(job, Action.SPOT, market, now):
            if job.running is Action.ON_DEMAND and not self._worth_switching(job, market):
                return Decision(Action.ON_DEMAND, "spot is back, but too little would be saved")
            if job.running is not Action.SPOT and self._cheaper_pool_in_time(job, market, now):
                return Decision(
                    Action.HOLD, "spot is dearer here than on a pool expected back in time; waiting"
                )
            return Decision(Action.SPOT, "spot is available")
        if job.running is Action.ON_DEMAND:
            return Decision(Action.ON_DEMAND, "no spot; keeps the warm on-demand instance")
        # Going on-demand with a reserve of slack left, rather than none, is what lets a
        # job go back to spot when it returns (greedy cannot: it has no slack left then).
        reserve = self._reserve(job, market)
        if not safe(job, Action.HOLD, market, now, reserve):
            return self._fall_back(job, market, now, "slack is down to the reserve")
        if not market.spot_available:
            if self._outage_outlasts_wait(job, market, now, reserve):
                return self._fall_back(
                    job, market, now, "spot has been gone longer than the slack allows per outage"
                )
            return Decision(Action.HOLD, "no spot; slack remains, waiting")
        return Decision(Action.HOLD, "spot price over the ceiling; slack remains, waiting")

    def _fall_back(self, job: Job, market: Market, now: datetime, why: str) -> Decision:
        if self._provider_beats_on_demand(job, market, now):
            return Decision(
                Action.PROVIDER_BATCH,
                f"{why}; the provider's batch tier is cheaper than on-demand and still in time",
            )
        return Decision(Action.ON_DEMAND, f"{why}; on-demand until spot returns")

    def _outage_outlasts_wait(
        self, job: Job, market: Market, now: datetime, reserve: float
    ) -> bool:
        """Whether this outage has lasted past the wait the slack allows each one: the
        outages expected before the deadline (at the rate spot came back lately), each
        waited out at most that long, spend `outage_wait_factor` times the slack beyond
        the reserve. Waiting out the first outages whole leaves nothing to wait out the
        short gaps between later spot runs, and each of those then costs two restarts
        and on-demand time."""
        gone, rate = market.spot_gone_seconds, market.spot_runs_per_hour
        if gone is None or rate is None or not market.outage_seconds:
            return False
        budget = self.outage_wait_factor * (_spare(job, market, now) - reserve)
        return gone >= wait_limit(market.outage_seconds, rate * _left(job, now) / 3600, budget)

    def _reserve(self, job: Job, market: Market) -> float:
        """Slack kept back for going to spot and back: at least `reserve_restarts`, and
        `cycle_restarts` for each time spot can be expected to come back before the job
        is done, at the rate seen lately. A fixed reserve is eaten by the first few
        round trips of a long job on a pool that comes and goes, which then sits on
        on-demand through hours of spot."""
        restarts = self.reserve_restarts
        if market.spot_runs_per_hour is not None:
            cycles = market.spot_runs_per_hour * job.remaining_seconds / 3600
            restarts = max(restarts, self.cycle_restarts * cycles)
        return restarts * market.restart_seconds

    def _cheaper_pool_in_time(self, job: Job, market: Market, now: datetime) -> bool:
        """Whether to wait for a cheaper spot pool rather than start on this one: it had
        spot often enough lately that, over the time left beyond the reserve, it can be
        expected to cover `cheaper_pool_margin` times the work. Waiting costs nothing but
        slack; the margin is there because a wrong guess ends on on-demand."""
        share = market.cheaper_spot_share
        if share is None:
            return False
        reserve = self._reserve(job, market)
        if not safe(job, Action.HOLD, market, now, reserve):
            return False
        usable = _left(job, now) - reserve - market.restart_seconds
        return share * usable >= self.cheaper_pool_margin * job.remaining_seconds

    def _provider_beats_on_demand(self, job: Job, market: Market, now: datetime) -> bool:
        turnaround = market.provider_turnaround_seconds
        if job.provider_cost is None or turnaround is None or job.running is not Action.HOLD:
            return False
        rest = Decimal(job.remaining_seconds + market.restart_seconds) / HOUR
        return _left(job, now) >= turnaround and job.provider_cost < market.on_demand_price * rest

    def _worth_switching(self, job: Job, market: Market) -> bool:
        """Leave a warm on-demand instance for spot if the expected run saves money."""
        expected = job.remaining_seconds
        if market.spot_mean_uptime_seconds is not None:
            expected = min(expected, market.spot_mean_uptime_seconds)
        restart = Decimal(market.restart_seconds) / HOUR
        gain = (market.on_demand_price - market.spot_price) * Decimal(expected) / HOUR
        # The spot restart now, and an on-demand restart if spot leaves before the end.
        loss = market.spot_price * restart
        if expected < job.remaining_seconds:
            loss += market.on_demand_price * restart
        return gain > loss

    def _provider(self, job: Job, market: Market, now: datetime) -> Decision | None:
        turnaround = market.provider_turnaround_seconds
        if job.provider_cost is None or turnaround is None or job.running is not Action.HOLD:
            return None
        if _left(job, now) < turnaround:
            return None
        # The least self-hosting could cost: everything on spot, one restart.
        floor = (
            min(market.spot_price, market.on_demand_price)
            * Decimal(job.remaining_seconds + market.restart_seconds)
            / HOUR
        )
        if job.provider_cost < floor:
            return Decision(Action.PROVIDER_BATCH, "the provider's batch tier beats even spot")
        return None


POLICIES: dict[str, Policy] = {
    p.name: p for p in (OnDemand(), Greedy(), UniformProgress(), SlackReserve())
}


def policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        known = ", ".join(sorted(POLICIES))
        raise ValueError(f"unknown policy {name!r} (known: {known})") from None
