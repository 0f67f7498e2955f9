"""The offline optimum: the least a job could cost, knowing the whole trace in advance.

Exact dynamic programming over the trace's ticks, with the same model the simulator
uses: work and restart time in whole ticks; each tick a job holds (free), runs on spot
(where the trace has capacity) or runs on on-demand; starting on an instance spends
`restart` ticks, paid, before progress. Costs are integers (nanodollars) so the answer
is exact. Nothing can do better than this on the same trace: it is the physical limit
that `slackwater sim` measures policies against.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import numpy as np

from slackwater.domain.money import from_nano, to_nano

INFEASIBLE = np.int64(2**62)


def optimal_cost(
    available: Sequence[bool],
    spot_tick_cost: Sequence[Decimal],
    on_demand_tick_cost: Decimal,
    work_ticks: int,
    restart_ticks: int,
) -> Decimal | None:
    """Least cost to do `work_ticks` of work within these ticks; None if impossible."""
    return optimal_cost_pools(
        [(available, spot_tick_cost)], on_demand_tick_cost, work_ticks, restart_ticks
    )


def optimal_cost_pools(
    spot: Sequence[tuple[Sequence[bool], Sequence[Decimal]]],
    on_demand_tick_cost: Decimal,
    work_ticks: int,
    restart_ticks: int,
) -> Decimal | None:
    """The same over several spot pools (each: availability and cost per tick) and
    on-demand: moving from one pool to another is a restart, as a new instance is."""
    if work_ticks <= 0:
        return Decimal(0)
    ticks = len(spot[0][0]) if spot else 0
    kinds = [
        (np.array(up, dtype=bool), np.array([to_nano(c) for c in cost], dtype=np.int64))
        for up, cost in spot
    ]
    kinds.append(
        (np.ones(ticks, dtype=bool), np.full(ticks, to_nano(on_demand_tick_cost), dtype=np.int64))
    )
    warm = restart_ticks + 1  # warm-up ticks left: restart_ticks .. 0
    # value[k][w]: least cost to finish from here, as an array over the work left (index
    # 0 = done), having run on kind k last tick (a spot pool, or on-demand last) with w
    # warm-up ticks to go; `idle` has held (or never started).
    idle = np.full(work_ticks + 1, INFEASIBLE, dtype=np.int64)
    idle[0] = 0
    value = [[idle.copy() for _ in range(warm)] for _ in kinds]
    for t in range(ticks - 1, -1, -1):
        options = [idle]
        new_value: list[list[np.ndarray]] = []
        started: list[np.ndarray | None] = []
        for (up, cost), runs in zip(kinds, value, strict=True):
            if not up[t]:
                new_value.append([np.full(work_ticks + 1, INFEASIBLE, dtype=np.int64)] * warm)
                started.append(None)
                continue
            price = cost[t]
            moved = _progress(runs[0])
            # Starting fresh here: pay the tick, spend it warming up (or working).
            start = price + (moved if restart_ticks == 0 else runs[restart_ticks - 1])
            started.append(start)
            options.append(start)
            new_value.append([price + (moved if w == 0 else runs[w - 1]) for w in range(warm)])
        fresh = np.minimum.reduce(options)
        for k, kind in enumerate(new_value):
            # Staying where it is, or leaving for a hold or another kind.
            others = [s for j, s in enumerate(started) if j != k and s is not None]
            elsewhere = np.minimum.reduce([idle, *others])
            for w in range(warm):
                kind[w] = _done(np.minimum(np.minimum(kind[w], elsewhere), INFEASIBLE))
        idle = _done(np.minimum(fresh, INFEASIBLE))
        value = new_value
    best = int(idle[work_ticks])
    if best >= INFEASIBLE:
        return None
    return from_nano(best)


def _progress(v: np.ndarray) -> np.ndarray:
    """The value after one tick of progress: work left r becomes r - 1."""
    out = np.empty_like(v)
    out[0] = 0
    out[1:] = v[:-1]
    return out


def _done(v: np.ndarray) -> np.ndarray:
    v[0] = 0
    return v
