"""Services: the running parts of one slackwater process, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from slackwater.domain.model import Catalog
from slackwater.ports import BlobStore, Clock, Store
from slackwater.runtime.batches import BatchService
from slackwater.runtime.engines import EngineSet
from slackwater.runtime.files import FileService
from slackwater.runtime.finalizer import Finalizer
from slackwater.runtime.intake import Intake
from slackwater.runtime.metrics import Metrics
from slackwater.runtime.monitor import Monitor
from slackwater.runtime.routing import AutoRouter
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
    files: FileService
    batches: BatchService
    intake: Intake
    finalizer: Finalizer
    monitor: Monitor | None
    workers: list[Worker] = field(default_factory=list)
    webhooks: WebhookSender | None = None
    metrics: Metrics = field(default_factory=Metrics)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopped: bool = False

    async def start(self) -> None:
        await self.store.migrate()
        loops = [w.run() for w in self.workers]
        if self.monitor is not None:
            loops.append(self.monitor.run())
        if self.webhooks is not None:
            loops.append(self.webhooks.run())
        self._tasks = [asyncio.create_task(loop) for loop in loops]

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for worker in self.workers:
            worker.stop()
        if self.monitor is not None:
            self.monitor.stop()
        if self.webhooks is not None:
            self.webhooks.stop()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await asyncio.wait_for(task, timeout=30)
                except TimeoutError:
                    log.warning("a background loop did not stop in time")
        await self.engines.close()
        await self.store.close()
