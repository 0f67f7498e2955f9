"""Run one JSONL batch file to completion in this process: no server, same code path
(intake -> store -> worker -> finalizer) as a served batch.

Run again on the same data directory after a crash, the same file carries on where it
stopped: the batch is found by the file's digest, the dead run's leases are taken back,
and only the lines without a result run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from slackwater.domain.batch import Batch, BatchStatus
from slackwater.domain.errors import InvalidRequest, SlackwaterError
from slackwater.runtime.services import Services

PROJECT = "default"
# One worker and nothing to share: big leases mean fewer hand-offs between engine calls.
OFFLINE_LEASE_SIZE = 4096
SOURCE = "run_batch_sha256"  # the batch's metadata key: the input file's digest


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold the data directory for one run: a second `run-batch` on it is refused (the
    first takes back every lease it finds, as a crashed run's)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "run-batch.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SlackwaterError(f"another run-batch is using {data_dir}") from None
        yield


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


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
    source_digest = digest(source)
    batch = await _earlier_run(services, source_digest)
    if batch is not None:
        # Every lease in the store is a dead run's: this run holds the directory.
        await services.store.reap_leases(
            services.clock() + timedelta(seconds=worker.lease_seconds + 1)
        )
    else:
        batch = await _submit(services, source, completion_window, source_digest, progress)
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
    progress.recorded(batch.request_counts.completed + batch.request_counts.failed)
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


async def _earlier_run(services: Services, source_digest: str) -> Batch | None:
    """The batch an earlier run of this file left in this data directory, running or
    completed (a run killed while copying its results out). One still validating has
    nothing to keep: it is cancelled, and the file starts over; so does a failed,
    expired or cancelled one."""
    page = await services.store.list_batches(PROJECT, limit=100, after=None)
    for batch in page.items:
        if (batch.metadata or {}).get(SOURCE) != source_digest:
            continue
        if batch.status.is_terminal and batch.status is not BatchStatus.COMPLETED:
            continue
        if batch.status is BatchStatus.VALIDATING:
            await services.batches.cancel(PROJECT, batch.id)
            continue
        return batch  # type: ignore[no-any-return]
    return None


async def _submit(
    services: Services, source: Path, window: str, source_digest: str, progress: Progress
) -> Batch:
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
        completion_window=window,
        metadata={SOURCE: source_digest},
    )
    progress.validating(file.lines)
    services.intake.on_progress = progress.validated
    return await services.intake.ingest(batch.id)
