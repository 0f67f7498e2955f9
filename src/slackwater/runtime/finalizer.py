"""Finalizer: write a batch's output and error files, in input order, and close it.

Restartable: file ids are derived from the batch id and files are written through a
temp file, so a crash mid-way just means the same files are written again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import IO

import orjson

from slackwater.domain.batch import Batch, BatchStatus
from slackwater.domain.errors import NotFound
from slackwater.domain.files import FilePurpose
from slackwater.domain.request import RequestStatus
from slackwater.ports import Clock, FinalizerStore, FinishedRequest
from slackwater.runtime.files import FileService

log = logging.getLogger(__name__)

_UNRUN_ERRORS = {
    RequestStatus.CANCELLED: (
        b'{"code":"batch_cancelled","message":"This request was not executed because the '
        b'batch was cancelled."}'
    ),
    RequestStatus.EXPIRED: (
        b'{"code":"batch_expired","message":"This request could not be executed before the '
        b'completion window expired."}'
    ),
}


def output_line(request: FinishedRequest) -> bytes:
    """One line of an output or error file, in OpenAI's batch output format."""
    head = b'{"id":"batch_' + request.request_id.encode() + b'","custom_id":'
    head += orjson.dumps(request.custom_id)
    if request.status in (RequestStatus.SUCCEEDED, RequestStatus.FAILED):
        body = request.response or b"null"
        if request.route is not None and body.rstrip().endswith(b"}"):
            # An extension field: which model answered and why (clients ignore extras).
            inner = body.rstrip()[:-1].rstrip()
            comma = b"" if inner.endswith(b"{") else b","
            body = inner + comma + b'"slackwater":{"route":' + request.route + b"}}"
        return (
            head
            + b',"response":{"status_code":'
            + str(request.status_code).encode()
            + b',"request_id":"'
            + request.request_id.encode()
            + b'","body":'
            + body
            + b'},"error":null}\n'
        )
    error = _UNRUN_ERRORS.get(request.status, _UNRUN_ERRORS[RequestStatus.CANCELLED])
    return head + b',"response":null,"error":' + error + b"}\n"


def file_ids(batch_id: str) -> tuple[str, str]:
    suffix = batch_id.removeprefix("batch_")
    return f"file_{suffix}_output", f"file_{suffix}_errors"


class Finalizer:
    def __init__(self, store: FinalizerStore, files: FileService, clock: Clock) -> None:
        self.store = store
        self.files = files
        self.blobs = files.blobs
        self.clock = clock

    async def finalize(self, batch: Batch) -> Batch:
        terminal = (
            BatchStatus.CANCELLED
            if batch.status is BatchStatus.CANCELLING
            else batch.outcome or BatchStatus.COMPLETED
        )
        output_id, error_id = file_ids(batch.id)
        counts = {output_id: [0, 0], error_id: [0, 0]}  # lines, bytes
        with self.blobs.writer(output_id) as out, self.blobs.writer(error_id) as err:
            async for request in self.store.finished(batch.id):
                if request.status in (RequestStatus.STAGED, RequestStatus.PENDING):
                    continue  # never accepted for running (a batch cancelled while validating)
                ok = request.status is RequestStatus.SUCCEEDED
                line = output_line(request)
                handle: IO[bytes] = out if ok else err
                handle.write(line)
                tally = counts[output_id if ok else error_id]
                tally[0] += 1
                tally[1] += len(line)
            await asyncio.to_thread(_flush, out, err)
        kept: dict[str, str | None] = {}
        for file_id, (lines, size) in counts.items():
            if not lines:
                await self.blobs.delete(file_id)
                kept[file_id] = None
                continue
            await self._register(batch, file_id, lines, size)
            kept[file_id] = file_id
        moved = await self.store.move_batch(
            batch.id,
            terminal,
            self.clock(),
            output_file_id=kept[output_id],
            error_file_id=kept[error_id],
        )
        log.info("batch %s %s", batch.id, terminal.value)
        return moved

    async def _register(self, batch: Batch, file_id: str, lines: int, size: int) -> None:
        try:
            await self.store.get_file(None, file_id)  # written before a crash: kept
        except NotFound:
            await self.files.register(
                file_id,
                batch.project,
                f"{batch.id}_{file_id.rsplit('_', 1)[-1]}.jsonl",
                FilePurpose.BATCH_OUTPUT.value,
                size=size,
                lines=lines,
                expires_after=batch.output_expires_seconds,
            )


def _flush(*handles: IO[bytes]) -> None:
    for handle in handles:
        handle.flush()
