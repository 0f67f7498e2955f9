"""Worker: lease a chunk of requests of one model, run it in engine batches, record.

Results are recorded in the background at least every `flush_seconds` while the chunk
runs, so request counts move live and a crash loses at most that much finished work.
A heartbeat keeps the lease alive while the engine works; if the worker dies, the lease
runs out and the monitor gives the requests back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import defaultdict
from collections.abc import Callable

from slackwater.domain.ids import new_id
from slackwater.domain.request import Request, Result
from slackwater.ports import Clock, Lease, Store
from slackwater.runtime.engines import EngineSet

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        store: Store,
        engines: EngineSet,
        clock: Clock,
        *,
        lease_size: int = 256,
        lease_seconds: float = 60.0,
        poll_seconds: float = 0.2,
        flush_seconds: float = 0.5,
        models: list[str] | None = None,
        on_recorded: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.engines = engines
        self.clock = clock
        self.lease_size = lease_size
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.flush_seconds = flush_seconds
        self.models = models or engines.catalog.names()
        self.owner = f"{socket.gethostname()}:{new_id('worker')}"
        self.on_recorded = on_recorded
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        """Work until `stop()` is called; a chunk in flight is finished first."""
        while not self.stopping.is_set():
            try:
                done = await self.step()
            except Exception:  # a bad chunk must not kill the worker; its lease runs out
                log.exception("worker step failed")
                done = 0
            if not done:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.poll_seconds)

    def stop(self) -> None:
        self.stopping.set()

    async def step(self) -> int:
        """Lease and run one chunk; returns how many requests were recorded."""
        lease = await self.store.lease(
            self.owner, self.models, self.lease_size, self.clock(), self.lease_seconds
        )
        if lease is None:
            return 0
        beat = asyncio.create_task(self._heartbeat(lease))
        try:
            return await self._run(lease)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _run(self, lease: Lease) -> int:
        model = self.engines.model(lease.model)
        by_endpoint: dict[str, list[Request]] = defaultdict(list)
        for request in lease.requests:
            by_endpoint[request.endpoint].append(request)
        recorded = 0
        # Results are written in the background while the engine goes on, at most one
        # write in flight, at least every `flush_seconds`: counts move live, and a crash
        # loses at most that much finished work (which then runs again, once).
        buffer: list[Result] = []
        writing: asyncio.Task[int] | None = None
        last_flush = time.monotonic()
        try:
            for endpoint, pending in by_endpoint.items():
                for start in range(0, len(pending), model.max_batch_size):
                    chunk = pending[start : start + model.max_batch_size]
                    outcomes = await self.engines.run(model.name, endpoint, [r.body for r in chunk])
                    buffer.extend(Result(r.id, o) for r, o in zip(chunk, outcomes, strict=True))
                    if time.monotonic() - last_flush < self.flush_seconds:
                        continue
                    if writing is not None:
                        recorded += await writing
                    writing = asyncio.create_task(self._record(lease, buffer))
                    buffer, last_flush = [], time.monotonic()
            if writing is not None:
                recorded += await writing
                writing = None
            recorded += await self._record(lease, buffer)
        finally:
            if writing is not None:
                writing.cancel()
        # Anything not recorded (shutdown mid-chunk) goes back to the queue now.
        await self.store.release(lease.id)
        return recorded

    async def _record(self, lease: Lease, results: list[Result]) -> int:
        stored = await self.store.record(lease.id, results, self.clock())
        if self.on_recorded:
            self.on_recorded(stored)
        return stored

    async def _heartbeat(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            held = await self.store.heartbeat(lease.id, self.clock(), self.lease_seconds)
            if not held:
                log.warning("lease %s was lost (expired and reaped)", lease.id)
                return
