"""The shape of a background loop: do the work that is due, and when there was none,
sleep until told there may be some, or the poll interval passes, or the process stops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def run_until(
    stopping: asyncio.Event,
    woken: asyncio.Event,
    poll_seconds: float,
    work: Callable[[], Awaitable[object]],
    what: str,
) -> None:
    """Call `work` until `stopping` is set; after a call that did nothing (falsy), wait
    for `woken`, `stopping` or `poll_seconds`. A failing call is logged, not fatal."""
    while not stopping.is_set():
        try:
            did = await work()
        except Exception:  # a failing store must not end the loop; try again
            log.exception("%s failed", what)
            did = None
        if not did:
            waiters = {
                asyncio.ensure_future(stopping.wait()),
                asyncio.ensure_future(woken.wait()),
            }
            await asyncio.wait(waiters, timeout=poll_seconds, return_when="FIRST_COMPLETED")
            for waiter in waiters:
                waiter.cancel()
            woken.clear()
