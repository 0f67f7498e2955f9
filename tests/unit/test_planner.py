"""The planner's policies: spot when it pays, hold while slack lasts, never miss."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from slackwater.domain.pool import Trace
from slackwater.policy.planner import (
    POLICIES,
    Action,
    Greedy,
    Job,
    Market,
    SlackReserve,
    anywhere,
    mean_run_seconds,
    outages,
    policy,
    returns_per_hour,
    spot_share,
    wait_limit,
)
from slackwater.policy.simulate import (
    Prices,
    SimResult,
    SpotHistory,
    WorkloadJob,
    optimum,
    simulate,
    tick_cost,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = 3600.0


def job(remaining_hours: float, left_hours: float, **kw: object) -> Job:
    fields: dict[str, object] = {
        "id": "j",
        "arrival": NOW - timedelta(hours=1),
        "deadline": NOW + timedelta(hours=left_hours),
        "total_seconds": remaining_hours * HOUR,
        "remaining_seconds": remaining_hours * HOUR,
    }
    fields.update(kw)
    return Job(**fields)  # type: ignore[arg-type]


def market(available: bool = True, **kw: object) -> Market:
    fields: dict[str, object] = {
        "spot_available": available,
        "spot_price": Decimal("0.9"),
        "on_demand_price": Decimal("3.0"),
        "tick_seconds": 300.0,
        "restart_seconds": 300.0,
    }
    fields.update(kw)
    return Market(**fields)  # type: ignore[arg-type]


def test_spot_when_it_is_there() -> None:
    decision = SlackReserve().decide(job(2, 10), market(), NOW)
    assert decision.action is Action.SPOT


def test_holds_while_slack_remains() -> None:
    assert SlackReserve().decide(job(2, 10), market(False), NOW).action is Action.HOLD


def test_on_demand_when_the_slack_is_down_to_the_reserve() -> None:
    # 2 h of work, 2.3 h left: less than 4 restarts (20 min) of slack after this tick.
    decision = SlackReserve().decide(job(2, 2.3), market(False), NOW)
    assert decision.action is Action.ON_DEMAND
    assert "reserve" in decision.reason
    # Greedy waits until the very last moment instead.
    assert Greedy().decide(job(2, 2.3), market(False), NOW).action is Action.HOLD


def test_the_reserve_grows_with_how_often_spot_comes_back() -> None:
    # 20 hours of work, an hour of slack: a fixed reserve (8 restarts of 5 minutes)
    # waits; spot coming back once an hour means some 20 round trips still to pay for.
    long = job(20, 21)
    assert SlackReserve().decide(long, market(False), NOW).action is Action.HOLD
    flapping = market(False, spot_runs_per_hour=1.0)
    decision = SlackReserve().decide(long, flapping, NOW)
    assert decision.action is Action.ON_DEMAND and "reserve" in decision.reason
    # Near its end the same rate asks for little: the job waits again.
    assert SlackReserve().decide(job(0.5, 1.6), flapping, NOW).action is Action.HOLD


def test_the_wait_per_outage_fits_the_expected_outages_into_the_budget() -> None:
    hours = [1.0, 1.0, 10.0]  # outages seen lately: two short, one long
    assert wait_limit([], 3, 6) == math.inf  # nothing seen: no limit
    assert wait_limit(hours, 3, 12) == math.inf  # three outages as long as these fit
    # Three outages, six hours to wait in all: the short ones whole, the long one four.
    assert wait_limit(hours, 3, 6) == 4.0
    assert wait_limit(hours, 6, 6) == 1.0
    assert wait_limit(hours, 3, 0) == 0.0 and wait_limit(hours, 3, -1) == 0.0


def test_outages_are_measured_from_samples() -> None:
    def at(minutes: int) -> datetime:
        return NOW + timedelta(minutes=minutes)

    seen = [(at(10 * i), c == "1") for i, c in enumerate("0011000110100")]
    # Three outages ended: one from the first sample (as far back as the samples go),
    # two seen whole; the one going on began at the eleventh sample.
    assert outages(seen, NOW) == ((1200.0, 1800.0, 600.0), at(110))
    assert outages(seen, at(60)) == ((1800.0, 600.0), at(110))  # ended since an hour in
    assert outages(seen[:-2], NOW) == ((1200.0, 1800.0, 600.0), None)  # spot is there


def test_waits_each_outage_out_only_as_long_as_the_slack_allows() -> None:
    # 20 h of work, 30 h left; spot came back every two hours lately, after outages of
    # an hour, an hour and four: the reserve is 40 restarts (3 h 20 min); 15 outages
    # are to be expected, and four times the 6.5 h of slack beyond the reserve waits
    # each out for 3.2 h at most.
    gone = market(False, spot_runs_per_hour=0.5, outage_seconds=(HOUR, HOUR, 4 * HOUR))
    assert SlackReserve().decide(job(20, 30), gone, NOW).action is Action.HOLD  # not gone long
    three = replace(gone, spot_gone_seconds=3 * HOUR)
    assert SlackReserve().decide(job(20, 30), three, NOW).action is Action.HOLD
    longer = replace(gone, spot_gone_seconds=3.5 * HOUR)
    decision = SlackReserve().decide(job(20, 30), longer, NOW)
    assert decision.action is Action.ON_DEMAND and "per outage" in decision.reason
    # With room for every outage, or told to wait them all out, it waits.
    assert SlackReserve().decide(job(5, 30), longer, NOW).action is Action.HOLD
    assert SlackReserve(outage_wait_factor=1000).decide(job(20, 30), longer, NOW).action is (
        Action.HOLD
    )
    # Outages it knows nothing of: no limit.
    unknown = replace(longer, outage_seconds=())
    assert SlackReserve().decide(job(20, 30), unknown, NOW).action is Action.HOLD


def test_a_long_outage_is_not_waited_out_at_the_cost_of_the_short_gaps_after_it() -> None:
    # Ten-minute ticks. For a day, and on: five hours without spot, then three hours of
    # spot with a tick's gap in each hour. A job arrives as an outage begins, with 80
    # ticks of work and 45 of slack.
    cycle = [0] * 30 + ([1] * 6 + [0]) * 3
    capacity = (cycle * 20)[:144] + [0] * 30 + ([1] * 6 + [0]) * 40
    trace = Trace(tick_seconds=600.0, capacity=capacity)
    work = WorkloadJob(
        "j", arrival_seconds=144 * 600, work_seconds=80 * 600, window_seconds=125 * 600
    )
    prices = Prices(restart_seconds=600.0)
    waits = SlackReserve(outage_wait_factor=math.inf)
    waited, cut = (simulate([work], trace, prices, p) for p in (waits, SlackReserve()))
    best = optimum([work], trace, prices)
    assert not waited.missed and not cut.missed
    # Waiting the outage out spends the slack the gaps needed: each then costs a trip to
    # on-demand and back. Going on-demand part way keeps it for them.
    assert cut.cost < Decimal("0.75") * waited.cost
    assert cut.cost < Decimal("1.15") * best.cost


def test_the_simulator_knows_of_spot_what_workers_would() -> None:
    # Ten-minute ticks: spot for two, gone for three (from tick 2 to 5), and so on.
    history = SpotHistory(Trace(tick_seconds=600.0, capacity=[1, 1, 0, 0, 0] * 30))
    # Under an hour seen: too little to say how often spot comes back (as workers judge
    # the feed's samples, returns_per_hour). Then two runs in the hour: the trace's
    # first, and spot back at tick 5.
    assert history.runs_per_hour(5) is None
    assert history.runs_per_hour(6) == 2.0
    assert history.gone(1) is None and history.gone(4) == 1200.0
    assert history.outages(5) == (1800.0,) and history.outages(4) == ()


def test_workers_expect_the_spot_run_the_simulator_expects() -> None:
    # Ten-minute ticks: spot for two, gone for three. A day's samples of the trace, as
    # the server records a feed, give the mean run the simulator reads from the trace.
    capacity = [1, 1, 0, 0, 0] * 60
    history = SpotHistory(Trace(tick_seconds=600.0, capacity=capacity))
    t = 201
    day = [(NOW + timedelta(minutes=10 * i), capacity[i] == 1) for i in range(t - 144, t)]
    until = NOW + timedelta(minutes=10 * t)
    assert mean_run_seconds(day, until) == history.mean_uptime(t)
    assert mean_run_seconds(day, until) == pytest.approx(1200, rel=0.02)  # a part run at the end
    # The last sample holds until `until`; a run under way at the first sample began
    # before them and is not counted, nor is a day with no run beginning in it.
    seen = [(NOW + timedelta(minutes=10 * i), c == "1") for i, c in enumerate("1100011100111")]
    assert mean_run_seconds(seen, NOW + timedelta(minutes=130)) == 40 * 60
    assert mean_run_seconds(seen[:2], NOW + timedelta(hours=5)) is None


def test_returns_per_hour_counts_the_runs_that_began_in_the_samples() -> None:
    def seen(pattern: str, minutes: int = 10) -> list[tuple[datetime, bool]]:
        return [(NOW + timedelta(minutes=i * minutes), c == "1") for i, c in enumerate(pattern)]

    assert returns_per_hour(seen("1010")) is None  # half an hour: too little to say
    # Two hours (13 samples, 10 minutes apart); spot began twice after the first sample
    # (the run under way at the start began before the samples, and is not counted).
    assert returns_per_hour(seen("1100011100111")) == 1.0
    assert returns_per_hour(seen("1111111111111")) == 0.0


def test_waits_for_a_cheaper_pool_expected_back_in_time() -> None:
    # 2 h of work, 10 h left: beyond the reserve (8 restarts) and a restart, 9.25 h.
    dear = market(spot_price=Decimal("1.1"))
    assert SlackReserve().decide(job(2, 10), dear, NOW).action is Action.SPOT  # none cheaper
    # A cheaper pool that had spot half of the last day: 4.6 h of it expected, 1.5 x 2 h.
    back = replace(dear, cheaper_spot_share=0.5)
    decision = SlackReserve().decide(job(2, 10), back, NOW)
    assert decision.action is Action.HOLD and "expected back" in decision.reason
    # Too little of it lately, a margin asking for more, or too little time left: spot here.
    assert SlackReserve().decide(job(2, 10), replace(back, cheaper_spot_share=0.3), NOW).action is (
        Action.SPOT
    )
    assert SlackReserve(cheaper_pool_margin=3).decide(job(2, 10), back, NOW).action is Action.SPOT
    assert SlackReserve().decide(job(2, 6), back, NOW).action is Action.SPOT
    # A job already running here stays.
    running = job(2, 10, running=Action.SPOT)
    assert SlackReserve().decide(running, back, NOW).action is Action.SPOT


def test_spot_share_and_returns_of_spot_in_any_of_several_pools() -> None:
    def seen(pattern: str, start: int = 0) -> list[tuple[datetime, bool]]:
        at = NOW - timedelta(hours=4)
        return [(at + timedelta(minutes=30 * (start + i)), c == "1") for i, c in enumerate(pattern)]

    since = NOW - timedelta(hours=4)
    # Four hours in half-hour samples; a sample holds until the next one.
    assert spot_share(seen("11110000"), since, NOW) == 0.5
    # Two pools: one or the other had spot five eighths of the time, and spot came
    # back once after the first sample (at 2:30, in the second pool; at 1:00 the first
    # pool's going and the second's coming, sampled together, are no return).
    both = anywhere([seen("11000000"), seen("00110010")])
    assert both == seen("11110010")
    assert spot_share(both, since, NOW) == 0.625
    assert returns_per_hour(both) == 1 / 3.5
    # Only what lies after `since` counts; a pool seen later counts from its first sample.
    assert spot_share(seen("11110000"), NOW - timedelta(hours=2), NOW) == 0.0
    assert spot_share(seen("0011", start=4), since, NOW) == 0.5
    # Under an hour seen, or nothing: too little to say.
    assert spot_share(seen("1", start=7), since, NOW) is None
    assert spot_share([], since, NOW) is None
    assert anywhere([[], []]) == []


def test_a_pool_not_sampled_yet_is_unknown_not_without_spot() -> None:
    # Two servers sample their feeds at different moments, so the last day's samples of
    # each pool begin at a different moment. Pool b, not seen yet at 0:00, does not
    # count as without spot: there was no outage at 0:00 and no return at 0:10.
    at = NOW - timedelta(hours=2)
    a = [(at, False), (at + timedelta(hours=1), False)]
    b = [(at + timedelta(minutes=10), True), (at + timedelta(minutes=70), True)]
    assert anywhere([a, b]) == [(b[0][0], True), (a[1][0], True), (b[1][0], True)]
    assert returns_per_hour(anywhere([a, b])) == 0
    # A pool seen with spot says spot was there, whatever the others not seen yet had.
    assert anywhere([[(at, True)], b[:1]]) == [(at, True), (b[0][0], True)]
    # Once every pool has been seen, all without spot is an outage.
    assert anywhere([a, [(at + timedelta(minutes=10), False)]])[0] == (b[0][0], False)


def test_spot_too_late_for_a_restart_goes_on_demand() -> None:
    # Exactly work + restart left: a spot restart now could not be recovered from.
    decision = SlackReserve().decide(job(2, 2 + 300 / HOUR), market(), NOW)
    assert decision.action is Action.ON_DEMAND


def test_pauses_while_the_spot_price_is_over_the_ceiling() -> None:
    pricey = market(spot_price=Decimal("2.5"), max_spot_price=Decimal("1.5"))
    assert SlackReserve().decide(job(2, 10), pricey, NOW).action is Action.HOLD
    assert SlackReserve().decide(job(2, 2.1), pricey, NOW).action is Action.ON_DEMAND


def test_goes_back_to_spot_when_it_saves_more_than_the_restarts() -> None:
    on_demand = job(2, 5, running=Action.ON_DEMAND)
    assert SlackReserve().decide(on_demand, market(), NOW).action is Action.SPOT
    # A spot run expected to last a minute does not pay for two restarts.
    short = market(spot_mean_uptime_seconds=60.0)
    assert SlackReserve().decide(on_demand, short, NOW).action is Action.ON_DEMAND


def test_provider_batch_tier_when_cheaper_than_even_spot() -> None:
    tier = market(provider_turnaround_seconds=24 * HOUR)
    cheap = job(10, 30, provider_cost=Decimal("5"))  # spot alone: ~9.08
    assert SlackReserve().decide(cheap, tier, NOW).action is Action.PROVIDER_BATCH
    dear = job(10, 30, provider_cost=Decimal("20"))
    assert SlackReserve().decide(dear, tier, NOW).action is Action.SPOT
    # Not within the provider's turnaround: self-host.
    assert SlackReserve().decide(job(10, 20, provider_cost=Decimal("5")), tier, NOW).action is (
        Action.SPOT
    )


def test_provider_batch_tier_instead_of_on_demand_when_spot_is_gone_and_time_runs_short() -> None:
    # 2 h of work, 2.3 h left, no spot: on-demand would cost 3 $/h x (2 h + a restart).
    quick = market(False, provider_turnaround_seconds=HOUR)
    between = job(2, 2.3, provider_cost=Decimal("4"))  # dearer than spot, under 6.25
    decision = SlackReserve().decide(between, quick, NOW)
    assert decision.action is Action.PROVIDER_BATCH and "on-demand" in decision.reason
    # With slack left it still waits for spot; with spot there it runs on spot.
    assert SlackReserve().decide(job(2, 10, provider_cost=Decimal("4")), quick, NOW).action is (
        Action.HOLD
    )
    spot = market(provider_turnaround_seconds=HOUR)
    assert SlackReserve().decide(job(2, 10, provider_cost=Decimal("4")), spot, NOW).action is (
        Action.SPOT
    )
    # Dearer than on-demand, or too slow for the time left: on-demand.
    dear = job(2, 2.3, provider_cost=Decimal("7"))
    assert SlackReserve().decide(dear, quick, NOW).action is Action.ON_DEMAND
    slow = market(False, provider_turnaround_seconds=3 * HOUR)
    assert SlackReserve().decide(between, slow, NOW).action is Action.ON_DEMAND


def test_unknown_policy_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="greedy"):
        policy("cheapest")


def random_trace(rng: random.Random, ticks: int) -> Trace:
    capacity, up = [], True
    for _ in range(ticks):
        if rng.random() < 0.15:
            up = not up
        capacity.append(1 if up else 0)
    return Trace(tick_seconds=600.0, capacity=capacity)


def random_workload(rng: random.Random, jobs: int, arrivals: int) -> list[WorkloadJob]:
    """Jobs arriving in the first `arrivals` ticks (of 600 s), each of 1-40 ticks of work
    and a window of that plus half a tick to 60 ticks."""
    return [
        WorkloadJob(
            f"j{i}",
            arrival_seconds=rng.uniform(0, arrivals) * 600,
            work_seconds=(w := rng.uniform(1, 40) * 600),
            window_seconds=w + rng.uniform(0.5, 60) * 600,
        )
        for i in range(jobs)
    ]


def no_policy_misses_or_beats_the_optimum(
    workload: list[WorkloadJob], pools: Trace | list[Trace]
) -> SimResult:
    """Every policy meets every feasible deadline and costs no less than the optimum,
    job by job; the optimum's result."""
    prices = Prices(restart_seconds=600.0)
    best = optimum(workload, pools, prices)
    for name, chosen in POLICIES.items():
        result = simulate(workload, pools, prices, chosen)
        assert result.missed_feasible == 0, name
        for mine, optimal in zip(result.jobs, best.jobs, strict=True):
            if mine.feasible:
                assert mine.cost >= optimal.cost, (name, mine.id)
    return best


@pytest.mark.parametrize("seed", range(8))
def test_no_policy_misses_a_feasible_deadline_or_beats_the_optimum(seed: int) -> None:
    rng = random.Random(seed)
    trace = random_trace(rng, 400)
    workload = random_workload(rng, 12, arrivals=200)
    no_policy_misses_or_beats_the_optimum(workload, trace)


@pytest.mark.parametrize("seed", range(6))
def test_on_several_pools_no_policy_misses_a_feasible_deadline_or_beats_the_optimum(
    seed: int,
) -> None:
    rng = random.Random(100 + seed)
    pools = [
        replace(random_trace(rng, 300), spot_prices=[Decimal(price)] * 300)
        for price in ("0.9", "1.1")
    ]
    workload = random_workload(rng, 10, arrivals=150)
    best = no_policy_misses_or_beats_the_optimum(workload, pools)
    alone = optimum(workload, pools[0], Prices(restart_seconds=600.0))
    # A second pool never makes the best plan dearer.
    assert all(b.cost <= a.cost for b, a in zip(best.jobs, alone.jobs, strict=True))


def test_pauses_while_every_spot_pool_is_over_the_ceiling() -> None:
    # Two pools with spot throughout; from tick 10 to 40 both cost more than the
    # ceiling, then the first falls back. A job arriving at tick 10 with room to wait
    # buys nothing in the spike and runs on the first pool after it.
    def pool(normal: str, spike: str) -> Trace:
        prices = [Decimal(normal)] * 10 + [Decimal(spike)] * 30 + [Decimal(normal)] * 60
        return Trace(tick_seconds=600.0, capacity=[1] * 100, spot_prices=prices)

    work = WorkloadJob(
        "j", arrival_seconds=10 * 600, work_seconds=10 * 600, window_seconds=80 * 600
    )
    prices = Prices(restart_seconds=600.0, max_spot_price=Decimal("2"))
    paused = simulate([work], [pool("0.9", "5"), pool("1.0", "4")], prices, SlackReserve())
    # 10 ticks of work and one restart at 0.9 $/hour, ten minutes a tick.
    assert paused.cost == Decimal("0.9") * 11 / 6
    # One pool under the ceiling through the spike: it runs there at once, at its price.
    cheap = simulate([work], [pool("0.9", "5"), pool("1.0", "1.5")], prices, SlackReserve())
    assert cheap.cost == Decimal("1.5") * 11 / 6
    # No room to wait: the deadline comes first (on-demand, not the spot over the ceiling).
    tight = replace(work, window_seconds=12 * 600)
    hurried = simulate([tight], [pool("0.9", "5"), pool("1.0", "4")], prices, SlackReserve())
    assert hurried.cost == Prices().on_demand_per_hour * 11 / 6 and not hurried.missed


def test_on_several_pools_a_job_with_room_waits_for_the_cheaper_pool() -> None:
    # A day and a half in ten-minute ticks: the cheaper pool had spot for the whole first
    # day, then goes for five ticks; the dearer one has spot throughout.
    cheap = Trace(
        tick_seconds=600.0,
        capacity=[1] * 150 + [0] * 5 + [1] * 61,
        spot_prices=[Decimal("0.9")] * 216,
    )
    dear = Trace(tick_seconds=600.0, capacity=[1] * 216, spot_prices=[Decimal("1.1")] * 216)
    work = WorkloadJob("j", arrival_seconds=150 * 600, work_seconds=10 * 600, window_seconds=36000)
    prices = Prices(restart_seconds=600.0)
    # It waits out the five ticks and runs on the cheaper pool: 10 ticks and a restart.
    waited = simulate([work], [cheap, dear], prices, SlackReserve())
    assert waited.cost == 11 * tick_cost(Decimal("0.9"), 600) and not waited.missed
    # Told to take any pool at once, it starts on the dearer one and stays.
    hasty = simulate([work], [cheap, dear], prices, SlackReserve(cheaper_pool_margin=1000))
    assert hasty.cost == 11 * tick_cost(Decimal("1.1"), 600)
    # Too little time to wait: the dearer pool at once.
    tight = replace(work, window_seconds=20 * 600)
    assert simulate([tight], [cheap, dear], prices, SlackReserve()).cost == hasty.cost
