"""Micro-batching: how long a worker waits for more requests before it runs an engine
batch that is not full.

An engine step costs a fixed part (reading the weights, launching kernels) plus a part
per request, measured as the engine runs (`StepTime`, a least-squares line through the
recent steps). Waiting pays while requests keep arriving: one that arrives during the
wait rides in this step instead of paying a whole step of its own. So, as Triton's
dynamic batcher (a queue delay bound) and BentoML's adaptive batcher (a cost model
learned from its own steps) do, a worker runs at once when the batch is full, waits at
most the step's fixed part (past that, a second step would have been as cheap; before
the first step, unknown), at most `max_wait`, never into the time the most urgent
request needs to finish by its deadline, and stops waiting once, at the rate requests
have come while it waited, none more would come in the time left.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class StepTime:
    """Seconds an engine step takes for a batch of n: `fixed + per_item * n`, fitted to
    the last `window` steps."""

    window: int = 32
    samples: deque[tuple[int, float]] = field(default_factory=deque)

    def add(self, size: int, seconds: float) -> None:
        if size <= 0 or seconds < 0:
            return
        self.samples.append((size, seconds))
        while len(self.samples) > self.window:
            self.samples.popleft()

    def fit(self) -> tuple[float, float] | None:
        """(fixed, per item), or None before the first step. Until steps of two sizes
        have been seen, all of a step counts as fixed (an upper bound of that part)."""
        n = len(self.samples)
        if n == 0:
            return None
        mean_x = sum(x for x, _ in self.samples) / n
        mean_y = sum(y for _, y in self.samples) / n
        spread = sum((x - mean_x) ** 2 for x, _ in self.samples)
        if spread == 0:
            return mean_y, 0.0
        slope = sum((x - mean_x) * (y - mean_y) for x, y in self.samples) / spread
        slope = max(slope, 0.0)
        return max(mean_y - slope * mean_x, 0.0), slope

    def seconds(self, size: int) -> float | None:
        fitted = self.fit()
        if fitted is None:
            return None
        fixed, per_item = fitted
        return fixed + per_item * size


@dataclass(frozen=True)
class Gather:
    """What a worker knows when it decides whether to wait for more."""

    pending: int  # runnable requests of the model it would run
    max_batch: int
    waited: float  # seconds already spent waiting for this batch
    slack: float  # seconds until the most urgent pending request is due
    arrived: int = 0  # requests that came while it waited


def wait_seconds(gather: Gather, step: StepTime, max_wait: float, look: float) -> float:
    """How long to wait before looking again (0: run now): a quarter of the step's fixed
    part at a time, `look` at least."""
    if gather.pending <= 0 or gather.pending >= gather.max_batch or max_wait <= 0:
        return 0.0
    # Before its first step an engine's cost is unknown: `max_wait` bounds the wait, as
    # the queue delay does in Triton's dynamic batcher.
    fixed, _ = step.fit() or (max_wait, 0.0)
    full = step.seconds(gather.max_batch) or 0.0
    budget = min(max_wait, fixed, gather.slack - full) - gather.waited
    if budget <= 0:
        return 0.0
    if gather.waited > 0 and gather.arrived / gather.waited * budget < 1:
        return 0.0  # at the rate they have come, none would arrive in the time left
    return min(budget, max(look, fixed / 4))
