"""The offline optimum is exact: it matches brute force over every action sequence."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal

import pytest

from slackwater.policy.optimum import optimal_cost, optimal_cost_pools

SPOT = Decimal("0.25")
DEMAND = Decimal("1.00")


def brute_force(available: list[bool], work: int, restart: int) -> Decimal | None:
    return brute_force_pools([(available, SPOT)], work, restart)


def test_all_spot_pays_one_restart() -> None:
    assert optimal_cost([True] * 6, [SPOT] * 6, DEMAND, 3, 1) == 4 * SPOT


def test_no_spot_means_on_demand() -> None:
    assert optimal_cost([False] * 6, [SPOT] * 6, DEMAND, 3, 1) == 4 * DEMAND


def test_impossible_is_none() -> None:
    assert optimal_cost([True] * 3, [SPOT] * 3, DEMAND, 3, 1) is None


def test_skips_a_spot_run_too_short_to_pay_its_restart() -> None:
    # One spot tick, then none: warming up on it buys nothing.
    available = [True, False, False, False]
    assert optimal_cost(available, [SPOT] * 4, DEMAND, 2, 1) == 3 * DEMAND


@pytest.mark.parametrize("seed", range(25))
def test_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    ticks = rng.randint(3, 8)
    available = [rng.random() < 0.6 for _ in range(ticks)]
    work = rng.randint(1, ticks)
    restart = rng.randint(0, 2)
    expected = brute_force(available, work, restart)
    assert optimal_cost(available, [SPOT] * ticks, DEMAND, work, restart) == expected


def brute_force_pools(
    pools: list[tuple[list[bool], Decimal]], work: int, restart: int
) -> Decimal | None:
    """Every plan over hold, each spot pool and on-demand (the last kind)."""
    ticks = len(pools[0][0])
    kinds = [*pools, ([True] * ticks, DEMAND)]
    best: Decimal | None = None
    for plan in itertools.product(range(-1, len(kinds)), repeat=ticks):
        left, cost, running, warm = work, Decimal(0), -1, 0
        for tick, action in enumerate(plan):
            if left == 0:
                break
            if running >= 0 and not kinds[running][0][tick]:
                running, warm = -1, 0  # preempted
            if action < 0:
                running, warm = -1, 0
                continue
            if not kinds[action][0][tick]:
                break
            if action != running:
                running, warm = action, restart
            cost += kinds[action][1]
            if warm:
                warm -= 1
            else:
                left -= 1
        if left == 0 and (best is None or cost < best):
            best = cost
    return best


@pytest.mark.parametrize("seed", range(25))
def test_several_pools_match_brute_force(seed: int) -> None:
    rng = random.Random(100 + seed)
    ticks = rng.randint(3, 6)
    pools = [
        ([rng.random() < 0.5 for _ in range(ticks)], price)
        for price in (Decimal("0.25"), Decimal("0.40"))
    ]
    work = rng.randint(1, ticks)
    restart = rng.randint(0, 2)
    expected = brute_force_pools(pools, work, restart)
    spot = [(up, [price] * ticks) for up, price in pools]
    assert optimal_cost_pools(spot, DEMAND, work, restart) == expected


def test_a_second_pool_covers_the_first_ones_outage() -> None:
    # Pool a has spot for the first half, pool b for the second: two restarts of spot
    # beat waiting or on-demand.
    a = ([True] * 4 + [False] * 4, [SPOT] * 8)
    b = ([False] * 4 + [True] * 4, [SPOT] * 8)
    assert optimal_cost_pools([a, b], DEMAND, 6, 1) == 8 * SPOT
    assert optimal_cost_pools([a], DEMAND, 6, 1) == 4 * SPOT + 4 * DEMAND
