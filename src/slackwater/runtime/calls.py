"""Queued calls: an API call on a tier that may wait, run through the queue as a request
of its own and answered when a worker has recorded it.

Callers waiting in this process share one loop that reads how their calls stand, all at
once, every `poll_seconds` (at once when a worker here has just recorded something), so
a thousand waiting calls cost one query a tick, not a thousand. The queue is durable: a
call outlives this process, and a background response's answer is read from the store
whenever it is asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson

from slackwater.domain.errors import QuotaExceeded
from slackwater.domain.ids import new_id
from slackwater.domain.request import Outcome, RequestStatus
from slackwater.domain.tiers import ServiceTier
from slackwater.ports import CallState, CallStore, Clock, QueuedCall, StoredResponse

log = logging.getLogger(__name__)

COUNT_SECONDS = 1.0  # how stale a tier's count of waiting calls may be

ENDED = frozenset(
    {
        RequestStatus.SUCCEEDED,
        RequestStatus.FAILED,
        RequestStatus.CANCELLED,
        RequestStatus.EXPIRED,
    }
)


def outcome_of(state: CallState) -> Outcome:
    """An ended call's answer as an engine outcome (its error, if it has none)."""
    if state.status is RequestStatus.SUCCEEDED and state.response is not None:
        return Outcome(state.status_code or 200, orjson.loads(state.response))
    if state.response is not None and state.status_code:
        return Outcome(state.status_code, orjson.loads(state.response))
    if state.status is RequestStatus.CANCELLED:
        return Outcome.error(499, "the call was cancelled before it ran", code="cancelled")
    return Outcome.error(504, "the call ran past its tier's window", code="expired")


class CallQueue:
    def __init__(self, store: CallStore, clock: Clock, *, poll_seconds: float = 0.05) -> None:
        self.store = store
        self.clock = clock
        self.poll_seconds = poll_seconds
        self._waiting: dict[str, asyncio.Future[CallState]] = {}
        self._woken = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        # Tier -> (calls waiting, when counted): the count is read from the store at most
        # once a second and kept up by this queue's own puts between reads, so filling a
        # tier costs one count a second, not one per call.
        self._queued: dict[str, tuple[int, float]] = {}
        # Told when a call is queued: a worker in this process may take it at once.
        self.on_queued: Callable[[], None] | None = None

    async def put(
        self,
        tier: ServiceTier,
        *,
        project: str,
        model: str,
        endpoint: str,
        body: dict[str, Any],
        route: dict[str, Any] | None = None,
        call_id: str | None = None,
        response: StoredResponse | None = None,
    ) -> QueuedCall:
        """Queue a call due within its tier's window (429 when the tier is full)."""
        if tier.max_queued and await self._queued_on(tier.name) >= tier.max_queued:
            raise QuotaExceeded(
                f"the {tier.name} tier has {tier.max_queued} calls waiting; "
                "try again shortly, or use another tier",
                code="tier_full",
            )
        now = self.clock()
        call = QueuedCall(
            id=call_id or new_id("call"),
            project=project,
            model=model,
            endpoint=endpoint,
            body=orjson.dumps(body).decode(),
            deadline=now + timedelta(seconds=tier.window_seconds),
            tier=tier.name,
            route=orjson.dumps(route).decode() if route is not None else None,
        )
        await self.store.enqueue_call(call, now, response)
        if tier.name in self._queued:
            count, at = self._queued[tier.name]
            self._queued[tier.name] = (count + 1, at)
        if self.on_queued is not None:
            self.on_queued()
        return call

    async def _queued_on(self, tier: str) -> int:
        count, at = self._queued.get(tier, (0, -COUNT_SECONDS))
        if time.monotonic() - at >= COUNT_SECONDS:
            count = await self.store.waiting_calls(tier)
            self._queued[tier] = (count, time.monotonic())
        return count

    async def answer(self, call_id: str) -> Outcome:
        """Wait for the call's answer. Cancelled (the caller went away, or ran out of
        time), the call is cancelled in the queue: nobody would read its answer."""
        future = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        self._start()
        self._woken.set()
        try:
            return outcome_of(await future)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.cancel_call(call_id, self.clock()))
            raise
        finally:
            self._waiting.pop(call_id, None)

    def wake(self) -> None:
        """Look now: a worker in this process has just recorded results."""
        self._woken.set()

    def _start(self) -> None:
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while self._waiting:
            self._woken.clear()
            try:
                states = await self.store.call_states(list(self._waiting))
            except Exception:  # a busy store: look again next tick
                log.exception("could not read how queued calls stand")
                states = {}
            for call_id, state in states.items():
                future = self._waiting.get(call_id)
                if state.status in ENDED and future is not None and not future.done():
                    future.set_result(state)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self.poll_seconds)

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
