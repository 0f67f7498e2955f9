"""Online calls to one model gathered into one engine call (Triton's dynamic batcher,
Ray Serve's `@serve.batch`): a call that finds the engine idle waits a moment for
company, never past `max_latency`; calls that come while an engine call runs go
together in the next one, up to `max_rows` rows.

The wait: `fixed` waits up to `max_latency` for a full batch; `adaptive` waits no
longer than the engine's measured time for a call (a call that waited longer than a
step would have been answered sooner alone), and `off` never waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slackwater.domain.request import Outcome

Run = Callable[[list[dict[str, Any]]], Awaitable[list[Outcome]]]
MODES = ("adaptive", "fixed", "off")


def rows_of(body: dict[str, Any]) -> int:
    inputs = body.get("inputs")
    return len(inputs) if isinstance(inputs, list) else 1


def wait_seconds(mode: str, max_latency: float, step_seconds: float | None) -> float:
    """How long the first call of a batch waits for more."""
    if mode == "off":
        return 0.0
    if mode == "fixed" or step_seconds is None:
        return max_latency
    return min(max_latency, step_seconds)


@dataclass
class _Waiting:
    body: dict[str, Any]
    rows: int
    answer: asyncio.Future[tuple[Outcome, float]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class MicroBatcher:
    def __init__(
        self, run: Run, *, max_rows: int, max_latency: float, mode: str = "adaptive"
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"micro-batching mode {mode!r} is not one of {MODES}")
        self.run = run
        self.max_rows = max_rows
        self.max_latency = max_latency
        self.mode = mode
        self.step_seconds: float | None = None  # a moving average of engine calls
        self._queue: list[_Waiting] = []
        self._arrived = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self.calls = 0  # engine calls made, for tests and benchmarks

    async def submit(self, body: dict[str, Any]) -> tuple[Outcome, float]:
        """The body's outcome, and its share of the engine call's seconds (by rows)."""
        waiting = _Waiting(body, rows_of(body))
        self._queue.append(waiting)
        self._arrived.set()
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._drain())
        return await waiting.answer

    async def _drain(self) -> None:
        while self._queue:
            await self._fill()
            taken: list[_Waiting] = []
            rows = 0
            while self._queue and (not taken or rows + self._queue[0].rows <= self.max_rows):
                waiting = self._queue.pop(0)
                taken.append(waiting)
                rows += waiting.rows
            await self._run(taken, rows)

    async def _fill(self) -> None:
        """Wait for more rows, up to the wait (counted from the first call's arrival)."""
        limit = time.monotonic() + wait_seconds(self.mode, self.max_latency, self.step_seconds)
        while sum(w.rows for w in self._queue) < self.max_rows:
            left = limit - time.monotonic()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    async def _run(self, taken: Sequence[_Waiting], rows: int) -> None:
        started = time.perf_counter()
        try:
            outcomes = await self.run([w.body for w in taken])
        except BaseException as exc:
            for waiting in taken:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        spent = time.perf_counter() - started
        self.calls += 1
        self.step_seconds = (
            spent if self.step_seconds is None else (0.8 * self.step_seconds + 0.2 * spent)
        )
        for waiting, outcome in zip(taken, outcomes, strict=True):
            if not waiting.answer.done():
                waiting.answer.set_result((outcome, spent * waiting.rows / max(rows, 1)))
