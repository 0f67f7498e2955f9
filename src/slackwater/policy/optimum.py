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
    if work_ticks <= 0:
        return Decimal(0)
    spot = np.array([to_nano(c) for c in spot_tick_cost], dtype=np.int64)
    demand = np.int64(to_nano(on_demand_tick_cost))
    warm = restart_ticks + 1  # warm-up ticks left: restart_ticks .. 0
    # value[k][w]: least cost to finish from here, as an array over the work left (index
    # 0 = done), having run on spot (k=0) or on-demand (k=1) last tick with w warm-up
    # ticks to go; `idle` has held (or never started).
    idle = np.full(work_ticks + 1, INFEASIBLE, dtype=np.int64)
    idle[0] = 0
    value = [[idle.copy() for _ in range(warm)] for _ in range(2)]
    for t in range(len(available) - 1, -1, -1):
        shifted = [[_progress(v) for v in kind] for kind in value]
        options = [idle]
        costs = [spot[t] if available[t] else None, demand]
        new_value: list[list[np.ndarray]] = [[], []]
        started: list[np.ndarray | None] = [None, None]
        for k in (0, 1):
            price = costs[k]
            if price is None:
                new_value[k] = [np.full(work_ticks + 1, INFEASIBLE, dtype=np.int64)] * warm
                continue
            # Starting fresh on this kind: pay the tick, spend it warming up (or working).
            first = shifted[k][0] if restart_ticks == 0 else value[k][restart_ticks - 1]
            start = price + first
            started[k] = start
            options.append(start)
            for w in range(warm):
                after = shifted[k][0] if w == 0 else value[k][w - 1]
                new_value[k].append(price + after)
        fresh = np.minimum.reduce(options)
        for k in (0, 1):
            other = started[1 - k]
            for w in range(warm):
                # Staying where we are, or leaving for a hold or the other kind.
                best = np.minimum(new_value[k][w], idle)
                if other is not None:
                    best = np.minimum(best, other)
                new_value[k][w] = _done(np.minimum(best, INFEASIBLE))
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
