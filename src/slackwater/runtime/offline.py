"""Run one JSONL batch file to completion in this process: no server, same code path
(intake -> store -> worker -> finalizer) as a served batch."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from slackwater.domain.batch import Batch, BatchStatus
from slackwater.domain.errors import InvalidRequest, SlackwaterError
from slackwater.runtime.services import Services

PROJECT = "default"
# One worker and nothing to share: big leases mean fewer hand-offs between engine calls.
OFFLINE_LEASE_SIZE = 4096


def endpoint_of(path: Path) -> str:
    """The `url` of the first request line: the batch's endpoint."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                url = json.loads(raw.lstrip(b"\xef\xbb\xbf")).get("url")
            except (ValueError, AttributeError):
                raise InvalidRequest(f"{path}:{number}: the line is not a JSON object") from None
            if not isinstance(url, str):
                raise InvalidRequest(f"{path}:{number}: field 'url' is missing")
            return url
    raise InvalidRequest(f"{path} has no requests")


@dataclass
class Progress:
    """Callbacks for a caller's progress display."""

    validating: Callable[[int], None] = lambda total: None
    validated: Callable[[int], None] = lambda n: None
    loading: Callable[[str], None] = lambda model: None
    running: Callable[[int], None] = lambda total: None
    recorded: Callable[[int], None] = lambda n: None


async def run_file(
    services: Services,
    source: Path,
    output: Path,
    errors: Path,
    *,
    completion_window: str = "24h",
    progress: Progress | None = None,
) -> Batch:
    """Ingest, run and finalize `source`; copy the result files to `output` and `errors`."""
    progress = progress or Progress()
    [worker] = services.workers
    monitor = services.monitor
    if monitor is None:
        raise ValueError("an offline run needs the monitor to finalize the batch")
    with ExitStack() as stack:
        upload = services.files.receive(stack, PROJECT)
        with source.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                upload.write(chunk)
    file = await services.files.commit(upload, PROJECT, source.name, "batch")
    batch = await services.batches.create(
        PROJECT,
        input_file_id=file.id,
        endpoint=endpoint_of(source),
        completion_window=completion_window,
    )
    progress.validating(file.lines)
    services.intake.on_progress = progress.validated
    batch = await services.intake.ingest(batch.id)
    if batch.status is BatchStatus.FAILED:
        return batch
    # Load the batch's models first, saying so: a first load can take a while.
    for model in sorted(
        {w.model for w in await services.store.open_work() if w.batch_id == batch.id}
    ):
        progress.loading(model)
        with contextlib.suppress(SlackwaterError):  # a model that cannot load fails its lines
            await services.engines.engine(model)
    progress.running(batch.request_counts.total)
    worker.on_recorded = progress.recorded
    while await worker.step():
        pass
    while not batch.status.is_terminal:
        await monitor.tick()
        batch = await services.store.get_batch(None, batch.id)
    for file_id, target in ((batch.output_file_id, output), (batch.error_file_id, errors)):
        if file_id:
            shutil.copyfile(services.blobs.path(file_id), target)
        elif target == output:
            target.write_bytes(b"")
    return batch
