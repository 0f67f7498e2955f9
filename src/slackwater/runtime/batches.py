"""BatchService: create, read, list and cancel batches (OpenAI's Batch API semantics)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from slackwater.domain.batch import Batch, BatchStatus, Endpoint
from slackwater.domain.clock import parse_completion_window
from slackwater.domain.errors import Conflict, InvalidRequest, NotFound, QuotaExceeded
from slackwater.domain.files import FilePurpose
from slackwater.domain.ids import new_id
from slackwater.domain.request import RequestStatus
from slackwater.domain.text import shown
from slackwater.ports import BatchStore, Clock, Page
from slackwater.runtime.files import FileService, expiry_seconds

MAX_METADATA_KEYS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


def check_metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata must be an object of strings", param="metadata")
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidRequest(f"metadata has more than {MAX_METADATA_KEYS} keys", param="metadata")
    for key, value in metadata.items():
        if (
            not isinstance(value, str)
            or len(key) > MAX_METADATA_KEY
            or len(value) > MAX_METADATA_VALUE
        ):
            raise InvalidRequest(
                f"metadata[{shown(key)!r}] must be a string of at most {MAX_METADATA_VALUE} "
                f"characters under a key of at most {MAX_METADATA_KEY}",
                param=f"metadata.{shown(key)}",
            )
    return dict(metadata)


class BatchService:
    def __init__(
        self,
        store: BatchStore,
        clock: Clock,
        files: FileService,
        *,
        max_queued_requests: int = 0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.files = files
        self.max_queued_requests = max_queued_requests

    async def create(
        self,
        project: str,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: Any = None,
        idempotency_key: str | None = None,
        retried_from: str | None = None,
        output_expires_after: Any = None,
        api: str = "openai",
    ) -> Batch:
        if endpoint not in {e.value for e in Endpoint}:
            raise InvalidRequest(
                f"endpoint {endpoint!r} is not supported; use one of "
                + ", ".join(e.value for e in Endpoint),
                param="endpoint",
            )
        window = parse_completion_window(completion_window)
        checked = check_metadata(metadata)
        output_expiry = None
        if output_expires_after is not None:
            if not isinstance(output_expires_after, dict):
                raise InvalidRequest(
                    "output_expires_after must be an object {anchor, seconds}",
                    param="output_expires_after",
                )
            output_expiry = expiry_seconds(
                output_expires_after.get("anchor"),
                output_expires_after.get("seconds"),
                "output_expires_after",
            )
        try:
            file = await self.store.get_file(project, input_file_id)
        except NotFound as exc:
            raise NotFound(exc.message, param="input_file_id") from None
        if file.purpose != FilePurpose.BATCH.value:
            raise InvalidRequest(
                f"file {input_file_id} has purpose {file.purpose!r}; batches need 'batch'",
                param="input_file_id",
            )
        if self.max_queued_requests:
            queued = await self.store.open_requests(project)
            if queued + file.lines > self.max_queued_requests:
                raise QuotaExceeded(
                    f"project {project!r} has {queued} requests queued; {file.lines} more would "
                    f"pass its quota of {self.max_queued_requests}. Try again when some finish."
                )
        now = self.clock()
        batch = Batch(
            id=new_id("batch"),
            project=project,
            endpoint=endpoint,
            input_file_id=input_file_id,
            completion_window=completion_window,
            status=BatchStatus.VALIDATING,
            created_at=now,
            expires_at=now + window,
            metadata=checked,
            retried_from=retried_from,
            output_expires_seconds=output_expiry,
            api=api,
        )
        return await self.store.add_batch(batch, idempotency_key)

    async def get(self, project: str, batch_id: str) -> Batch:
        return await self.store.get_batch(project, batch_id)

    async def list(
        self, project: str, *, limit: int, after: str | None, api: str | None = None
    ) -> Page:
        return await self.store.list_batches(project, limit=limit, after=after, api=api)

    async def delete(self, project: str, batch_id: str) -> Batch:
        """Delete an ended batch: its requests, and its output and error files."""
        batch = await self.store.delete_batch(project, batch_id)
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                with contextlib.suppress(NotFound):
                    await self.files.delete(project, file_id)
        return batch

    async def cancel(self, project: str, batch_id: str) -> Batch:
        batch = await self.store.get_batch(project, batch_id)
        if batch.status in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
            return batch
        return await self.store.move_batch(batch_id, BatchStatus.CANCELLING, self.clock())

    async def retry(self, project: str, batch_id: str) -> Batch:
        """A new batch of the lines that failed, were cancelled or expired in `batch_id`."""
        batch = await self.store.get_batch(project, batch_id)
        if not batch.status.is_terminal:
            raise Conflict(f"batch {batch_id} is {batch.status.value}; retry it once it has ended")
        if batch.status is BatchStatus.FAILED and batch.request_counts.total == 0:
            raise Conflict(
                f"batch {batch_id} failed validation; fix its input file and create a new batch"
            )
        lines = {
            request.line
            async for request in self.store.finished(batch_id)
            if request.status is not RequestStatus.SUCCEEDED
        }
        if not lines:
            raise Conflict(f"batch {batch_id} has no failed lines to retry")
        file_id = new_id("file")
        size, count = await asyncio.to_thread(self._copy_lines, batch, file_id, lines)
        file = await self.files.register(
            file_id,
            project,
            f"{batch.id}_retry.jsonl",
            FilePurpose.BATCH.value,
            size=size,
            lines=count,
        )
        metadata = {**(batch.metadata or {}), "retried_from": batch_id}
        return await self.create(
            project,
            input_file_id=file.id,
            endpoint=batch.endpoint,
            completion_window=batch.completion_window,
            metadata=dict(list(metadata.items())[-MAX_METADATA_KEYS:]),
            retried_from=batch_id,
        )

    def _copy_lines(self, batch: Batch, file_id: str, lines: set[int]) -> tuple[int, int]:
        """Copy the numbered lines of the batch's input into a new blob: (bytes, lines)."""
        blobs = self.files.blobs
        size = count = 0
        with blobs.open(batch.input_file_id) as source, blobs.writer(file_id) as target:
            for number, raw in enumerate(source, start=1):
                if number in lines:
                    line = raw if raw.endswith(b"\n") else raw + b"\n"
                    target.write(line)
                    size += len(line)
                    count += 1
        return size, count
