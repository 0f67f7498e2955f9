"""Services: the running parts of one slackwater process, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from slackwater.domain.model import Catalog
from slackwater.domain.pool import Pool
from slackwater.domain.tiers import ServiceTier
from slackwater.ports import BlobStore, Clock, Store
from slackwater.runtime.admission import Admission
from slackwater.runtime.batches import BatchService
from slackwater.runtime.call_ledger import CallLedger
from slackwater.runtime.calls import CallQueue
from slackwater.runtime.datasets import DatasetRunner
from slackwater.runtime.endpoints import WebhookEndpoints
from slackwater.runtime.engines import EngineSet
from slackwater.runtime.files import FileService
from slackwater.runtime.finalizer import Finalizer
from slackwater.runtime.intake import Intake
from slackwater.runtime.keys import KeyService
from slackwater.runtime.message_batches import MessageBatches
from slackwater.runtime.metrics import Metrics
from slackwater.runtime.monitor import Monitor
from slackwater.runtime.prices import PriceRecorder
from slackwater.runtime.realtime import Realtime
from slackwater.runtime.responses import ResponseService
from slackwater.runtime.routing import AutoRouter
from slackwater.runtime.schedules import Scheduler
from slackwater.runtime.sessions import SessionRunner
from slackwater.runtime.webhooks import WebhookSender
from slackwater.runtime.worker import Worker

log = logging.getLogger(__name__)


@dataclass
class Services:
    store: Store
    blobs: BlobStore
    catalog: Catalog
    clock: Clock
    engines: EngineSet
    router: AutoRouter | None
    admission: Admission
    realtime: Realtime
    keys: KeyService
    endpoints: WebhookEndpoints
    files: FileService
    batches: BatchService
    message_batches: MessageBatches
    intake: Intake
    finalizer: Finalizer
    monitor: Monitor | None
    calls: CallQueue
    call_ledger: CallLedger
    responses: ResponseService
    tiers: dict[str, ServiceTier]
    sessions: SessionRunner
    datasets: DatasetRunner
    scheduler: Scheduler
    datasets_dir: Path  # where the API may read dataset jobs' tables from
    # ...and the object-store prefixes it may read them from.
    dataset_uris: list[str] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    pools: list[Pool] = field(default_factory=list)  # as configured, for the dashboard
    prices: PriceRecorder | None = None  # the server samples the pools' feeds
    # A worker seen within this is alive; a model not measured yet takes this a request.
    alive_seconds: float = 60.0
    default_seconds_per_request: float = 1.0
    run_sessions: bool = False  # resume the sessions of its agents here
    webhooks: WebhookSender | None = None
    metrics: Metrics = field(default_factory=Metrics)
    # A realtime call's compute budget: past it, its engine work is stopped (HTTP 504).
    request_seconds: float = 300.0
    # On stop, workers finish the chunk in hand if it fits in this, else give it back.
    drain_seconds: float = 30.0
    # Serve /metrics, /docs and /openapi.json without a key even when keys exist.
    open_meta: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopped: bool = False
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        await self.store.migrate()
        loops = [w.run() for w in self.workers]
        if self.monitor is not None:
            loops.append(self.monitor.run())
        if self.webhooks is not None:
            loops.append(self.webhooks.run())
        loops.append(self.responses.run())
        if self.run_sessions:
            loops.append(self.sessions.run(self._stopping))
        if self.workers:  # a process that runs models runs dataset jobs too
            loops.append(self.datasets.run(self._stopping))
        if self.monitor is not None:  # the server starts scheduled runs
            loops.append(self.scheduler.run(self._stopping))
            if self.prices is not None:
                loops.append(self.prices.run(self._stopping))
        for worker in self.workers:
            worker.on_recorded = worker.on_recorded or self._recorded
        self.calls.on_queued = self._queued
        self._tasks = [asyncio.create_task(loop) for loop in loops]

    def _recorded(self, _: int) -> None:
        # A waiting call's answer, or a session's, may be among what was recorded.
        self.calls.wake()
        self.sessions.wake()

    def _queued(self) -> None:
        for worker in self.workers:
            worker.wake()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for worker in self.workers:
            worker.drain(self.drain_seconds)
        if self.monitor is not None:
            self.monitor.stop()
        if self.webhooks is not None:
            self.webhooks.stop()
        self.responses.stop()
        self._stopping.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=self.drain_seconds + 1)
            for task in late:
                log.warning("a background loop did not stop within the drain time")
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.calls.close()
        await self.call_ledger.close()
        await self.engines.close()  # stops what engines still run for nobody
        await self.store.close()
