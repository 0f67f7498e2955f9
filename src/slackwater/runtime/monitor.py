"""Monitor: the loop that moves batches along their state machine.

Each tick it returns expired leases to the queue, validates new batches, expires
batches past their window, and finalizes batches with nothing left to run. Between
ticks it glances (one read) at the running batches, so one whose last result has just
been recorded is finalized at once, and a new batch wakes it (`wake`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from slackwater.domain.batch import Batch, BatchStatus
from slackwater.domain.errors import Conflict, NotFound
from slackwater.domain.request import RequestStatus
from slackwater.ports import Clock, MonitorStore
from slackwater.runtime.files import FileService
from slackwater.runtime.finalizer import Finalizer
from slackwater.runtime.intake import Intake
from slackwater.runtime.metrics import Metrics

log = logging.getLogger(__name__)
INTAKE_PAUSE_SECONDS = 1.0
MAX_INTAKE_PAUSE_SECONDS = 300.0


class Monitor:
    def __init__(
        self,
        store: MonitorStore,
        intake: Intake,
        finalizer: Finalizer,
        clock: Clock,
        *,
        files: FileService | None = None,
        expiry_seconds: float = 60.0,
        interval: float = 0.25,
        glance: float = 0.05,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.intake = intake
        self.finalizer = finalizer
        self.clock = clock
        self.interval = interval
        self.glance = glance
        self.metrics = metrics
        # Files past their `expires_at` are deleted, and the ledger rolled up, every
        # `expiry_seconds`.
        self.files = files
        self.expiry_seconds = expiry_seconds
        self._expired_at = float("-inf")
        self.stopping = asyncio.Event()
        self._woken = asyncio.Event()
        self._ingesting: dict[str, asyncio.Task[Batch]] = {}
        # An intake that failed unexpectedly is tried again after a pause that doubles,
        # not on every tick: batch -> (monotonic time of the next try, pause).
        self._held_back: dict[str, tuple[float, float]] = {}
        self._running = 0  # batches in progress at the last tick

    async def run(self) -> None:
        await self.intake.start()
        while not self.stopping.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("monitor tick failed")
            try:
                await self._until_next_tick()
            except Exception:
                log.exception("monitor could not look at running batches")
        # Intake is restartable: stop it and wait, so nothing touches the store after.
        running = list(self._ingesting.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await self.intake.close()

    def wake(self) -> None:
        """Tick now (a batch was created, or has been validated)."""
        self._woken.set()

    async def _until_next_tick(self) -> None:
        """Wait `interval`, less if woken or if a running batch has every result."""
        deadline = time.monotonic() + self.interval
        while (left := deadline - time.monotonic()) > 0 and not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._woken.wait(), min(left, self.glance) if self._running else left
                )
            if self._woken.is_set():
                self._woken.clear()
                return
            if self._running and await self.store.batch_ids_in(
                BatchStatus.IN_PROGRESS, settled=True
            ):
                return

    def stop(self) -> None:
        self.stopping.set()
        self._woken.set()

    async def tick(self) -> None:
        reaped = await self.store.reap_leases(self.clock())
        if reaped and self.metrics:
            self.metrics.lease_expiries.inc(reaped)
        await self.store.promote_retries(self.clock())
        # An intake is forgotten here, before the store is asked, not when it ends: one
        # that settles while the question is on its way would otherwise be seen as still
        # validating, and started again.
        self._ingesting = {b: t for b, t in self._ingesting.items() if not t.done()}
        for batch_id in await self.store.batch_ids_in(BatchStatus.VALIDATING):
            if batch_id in self._ingesting:
                continue
            held = self._held_back.get(batch_id)
            if held is not None and time.monotonic() < held[0]:
                continue
            task = asyncio.create_task(self.intake.ingest(batch_id))
            self._ingesting[batch_id] = task
            task.add_done_callback(self._ingested)
        running = await self.store.batch_ids_in(BatchStatus.IN_PROGRESS)
        self._running = len(running)
        for batch_id in running:
            await self._guard(self._progress, batch_id)
        for batch_id in await self.store.batch_ids_in(BatchStatus.CANCELLING):
            await self._guard(self._cancelling, batch_id)
        for batch_id in await self.store.batch_ids_in(BatchStatus.FINALIZING):
            await self._guard(self._finalize, batch_id)
        if time.monotonic() - self._expired_at >= self.expiry_seconds:
            self._expired_at = time.monotonic()
            await self._housekeeping()

    async def _housekeeping(self) -> None:
        """Work that may wait a minute: expired files go; the ledger's rollup catches up."""
        if self.files is not None and (deleted := await self.files.delete_expired()):
            log.info("deleted %d expired files", deleted)
        await self.store.roll_up_ledger(self.clock())

    def _ingested(self, task: asyncio.Task[Batch]) -> None:
        for batch_id, running in self._ingesting.items():
            if running is task:
                self._note_failure(batch_id, task)
        self.wake()  # the next tick counts it among the running batches

    def _note_failure(self, batch_id: str, task: asyncio.Task[Batch]) -> None:
        if task.cancelled() or task.exception() is None:
            self._held_back.pop(batch_id, None)
            return
        _, pause = self._held_back.get(batch_id, (0.0, INTAKE_PAUSE_SECONDS / 2))
        pause = min(2 * pause, MAX_INTAKE_PAUSE_SECONDS)
        self._held_back[batch_id] = (time.monotonic() + pause, pause)
        log.error(
            "batch %s: intake failed; trying again in %.0f s",
            batch_id,
            pause,
            exc_info=task.exception(),
        )

    async def _guard(self, step: object, batch_id: str) -> None:
        # Another process may move the same batch first; that is not an error.
        with contextlib.suppress(Conflict, NotFound):
            await step(batch_id)  # type: ignore[operator]

    async def _progress(self, batch_id: str) -> None:
        batch = await self.store.get_batch(None, batch_id)
        now = self.clock()
        if now >= batch.expires_at:
            await self.store.close_unstarted(batch_id, RequestStatus.EXPIRED)
            if await self.store.count_open(batch_id) == 0:
                await self.store.move_batch(
                    batch_id, BatchStatus.FINALIZING, now, outcome=BatchStatus.EXPIRED
                )
            return
        counts = batch.request_counts
        if counts.completed + counts.failed < counts.total:
            return
        if await self.store.count_open(batch_id) == 0:
            batch = await self.store.move_batch(
                batch_id, BatchStatus.FINALIZING, now, outcome=BatchStatus.COMPLETED
            )
            await self._close(batch)

    async def _cancelling(self, batch_id: str) -> None:
        if batch_id in self._ingesting or await self.store.count_open(batch_id):
            return
        await self._close(await self.store.get_batch(None, batch_id))

    async def _finalize(self, batch_id: str) -> None:
        await self._close(await self.store.get_batch(None, batch_id))

    async def _close(self, batch: Batch) -> None:
        closed = await self.finalizer.finalize(batch)
        if self.metrics:
            self.metrics.finished(closed)
