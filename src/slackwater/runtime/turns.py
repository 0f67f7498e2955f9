"""Turns: realtime calls on a model that runs one call at a time, shared between projects.

The next call to run is the waiting one whose project has used the model least lately
(engine seconds, decaying with a half-life), first come first served within a project.
A call in steps hands its turn over between steps (`between`) when a project that has
used the model less is waiting. So a tenant that floods a model with its longest
requests gets the time others leave, and a light tenant waits for at most one step of
it, not for its queue (docs/security.md).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class _Waiter:
    usage: float
    order: int
    project: str = field(compare=False)
    granted: asyncio.Future[None] = field(compare=False)


class Turns:
    def __init__(
        self, half_life_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.half_life = half_life_seconds
        self.clock = clock
        self._holder: str | None = None
        self._since = 0.0
        self._waiting: list[_Waiter] = []
        self._usage: dict[str, tuple[float, float]] = {}  # project -> (seconds, as of)
        self._order = itertools.count()

    def usage(self, project: str) -> float:
        """The project's engine seconds, halved every `half_life` seconds."""
        seconds, since = self._usage.get(project, (0.0, 0.0))
        return seconds * math.pow(0.5, (self.clock() - since) / self.half_life)

    def holding(self) -> bool:
        return self._holder is not None

    async def take(self, project: str) -> None:
        """Wait for the turn."""
        if self._holder is None and not self._waiting:
            self._hold(project)
            return
        waiter = _Waiter(
            self.usage(project),
            next(self._order),
            project,
            asyncio.get_running_loop().create_future(),
        )
        self._waiting.append(waiter)
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self.give()  # granted as it was cancelled: pass the turn on
            elif waiter in self._waiting:
                self._waiting.remove(waiter)
            raise

    def give(self) -> None:
        """End the turn: charge its time to the holder's project, grant the next."""
        if self._holder is None:
            return
        self._charge(self._holder, self.clock() - self._since)
        self._holder = None
        while self._waiting:
            # Usage is looked at now: a project may have run since it began to wait.
            for waiter in self._waiting:
                waiter.usage = self.usage(waiter.project)
            nearest = min(self._waiting)
            self._waiting.remove(nearest)
            if not nearest.granted.done():
                self._hold(nearest.project)
                nearest.granted.set_result(None)
                return

    async def between(self) -> None:
        """A step boundary of the holder's call: give the turn to a project that has used
        the model less, if one waits, and queue for it again."""
        holder = self._holder
        if holder is None or not self._waiting:
            return
        spent = self.usage(holder) + (self.clock() - self._since)
        if min(self.usage(w.project) for w in self._waiting) >= spent:
            return
        self.give()
        await self.take(holder)

    def _hold(self, project: str) -> None:
        self._holder = project
        self._since = self.clock()

    def _charge(self, project: str, seconds: float) -> None:
        self._usage[project] = (self.usage(project) + seconds, self.clock())
