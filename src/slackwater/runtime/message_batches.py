"""Message Batches (Anthropic's batch API) on slackwater's own batches.

A message batch's requests are written as a JSONL file of chat completions and run as a
batch like any other (same queue, router, ledger and engines), marked `api="anthropic"`.
Its results are its output and error files, each line turned into a result line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from slackwater.domain.anthropic import CUSTOM_ID, chat_from_params, errored, result_from_output
from slackwater.domain.batch import Batch, BatchStatus, Endpoint
from slackwater.domain.errors import Conflict, InvalidRequest, LimitExceeded, NotFound
from slackwater.domain.files import FilePurpose
from slackwater.domain.ids import new_id
from slackwater.domain.request import RequestStatus
from slackwater.ports import BatchStore, Page
from slackwater.runtime.batches import BatchService
from slackwater.runtime.files import FileService

API = "anthropic"
MAX_REQUESTS = 100_000  # Anthropic's own limit per message batch
WINDOW = "24h"  # a message batch ends within a day


def batch_id_of(message_batch_id: str) -> str:
    return "batch_" + message_batch_id.removeprefix("msgbatch_")


def message_batch_id(batch: Batch) -> str:
    return "msgbatch_" + batch.id.removeprefix("batch_")


@dataclass(frozen=True)
class Counts:
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0


class MessageBatches:
    def __init__(self, store: BatchStore, batches: BatchService, files: FileService) -> None:
        self.store = store
        self.batches = batches
        self.files = files

    async def create(self, project: str, requests: Any) -> Batch:
        """Check every request's params (a bad one refuses the whole batch, naming it),
        then queue them as a batch of chat completions."""
        if not isinstance(requests, list) or not requests:
            raise InvalidRequest("requests: must be a non-empty list", param="requests")
        if len(requests) > MAX_REQUESTS:
            raise LimitExceeded(f"requests: at most {MAX_REQUESTS} per batch", param="requests")
        lines: list[bytes] = []
        seen: set[str] = set()
        for index, request in enumerate(requests):
            where = f"requests.{index}"
            custom_id = request.get("custom_id") if isinstance(request, dict) else None
            if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
                raise InvalidRequest(
                    f"{where}.custom_id: 1 to 64 letters, digits, '_' or '-'",
                    param=f"{where}.custom_id",
                )
            if custom_id in seen:
                raise InvalidRequest(
                    f"{where}.custom_id: {custom_id!r} is used by an earlier request",
                    param=f"{where}.custom_id",
                )
            seen.add(custom_id)
            body = chat_from_params(request.get("params"), f"{where}.params")
            if isinstance(body, list):
                raise InvalidRequest(body[0].message, param=body[0].param)
            line = {"custom_id": custom_id, "method": "POST", "url": Endpoint.CHAT.value}
            lines.append(orjson.dumps({**line, "body": body}) + b"\n")
        file_id = new_id("file")
        size = await asyncio.to_thread(self._write, file_id, lines)
        file = await self.files.register(
            file_id,
            project,
            "message_batch.jsonl",
            FilePurpose.BATCH.value,
            size=size,
            lines=len(lines),
        )
        return await self.batches.create(
            project,
            input_file_id=file.id,
            endpoint=Endpoint.CHAT.value,
            completion_window=WINDOW,
            api=API,
        )

    def _write(self, file_id: str, lines: list[bytes]) -> int:
        with self.files.blobs.writer(file_id) as handle:
            for line in lines:
                handle.write(line)
        return sum(len(line) for line in lines)

    async def get(self, project: str, message_batch: str) -> Batch:
        batch = await self.batches.get(project, batch_id_of(message_batch))
        if batch.api != API:  # an OpenAI batch is no message batch
            raise NotFound(f"No such message batch: {message_batch}", param="message_batch_id")
        return batch

    async def list(self, project: str, *, limit: int, after: str | None) -> Page:
        after_id = batch_id_of(after) if after else None
        return await self.batches.list(project, limit=limit, after=after_id, api=API)

    async def cancel(self, project: str, message_batch: str) -> Batch:
        batch = await self.get(project, message_batch)
        return await self.batches.cancel(project, batch.id)

    async def delete(self, project: str, message_batch: str) -> Batch:
        batch = await self.get(project, message_batch)
        return await self.batches.delete(project, batch.id)

    async def counts(self, batch: Batch) -> Counts:
        if batch.in_progress_at is None and batch.status.is_terminal:
            # Refused or cancelled before it ran: every request errored, or was canceled.
            lines = (await self.files.get(batch.project, batch.input_file_id)).lines
            if batch.status is BatchStatus.FAILED:
                return Counts(errored=lines)
            return Counts(canceled=lines)
        statuses = await self.store.request_statuses(batch.id)
        waiting = (RequestStatus.STAGED, RequestStatus.PENDING, RequestStatus.LEASED)
        return Counts(
            processing=sum(statuses.get(s.value, 0) for s in (*waiting, RequestStatus.RETRYING)),
            succeeded=statuses.get(RequestStatus.SUCCEEDED.value, 0),
            errored=statuses.get(RequestStatus.FAILED.value, 0),
            canceled=statuses.get(RequestStatus.CANCELLED.value, 0),
            expired=statuses.get(RequestStatus.EXPIRED.value, 0),
        )

    async def results(self, project: str, message_batch: str) -> AsyncIterator[bytes]:
        """The result lines of an ended message batch (Conflict before it ends)."""
        batch = await self.get(project, message_batch)
        if not batch.status.is_terminal:
            raise Conflict(f"message batch {message_batch} has not ended; its results come then")
        return self._results(batch)

    async def _results(self, batch: Batch) -> AsyncIterator[bytes]:
        if batch.in_progress_at is None:  # refused, or cancelled, before it ran
            async for line in self._unrun(batch):
                yield line
            return
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            handle = await asyncio.to_thread(self.files.blobs.open, file_id)
            with handle:
                for raw in handle:
                    yield orjson.dumps(result_from_output(orjson.loads(raw))) + b"\n"

    async def _unrun(self, batch: Batch) -> AsyncIterator[bytes]:
        """A batch that never ran: refused at validation (each request errors, with its
        line's reason) or cancelled first (each request was canceled)."""
        reasons = {e.line: e.message for e in batch.errors if e.line}
        summary = "; ".join(e.message for e in batch.errors[:3]) or "the batch was refused"
        handle = await asyncio.to_thread(self.files.blobs.open, batch.input_file_id)
        with handle:
            for number, raw in enumerate(handle, start=1):
                custom_id = orjson.loads(raw).get("custom_id")
                if batch.status is not BatchStatus.FAILED:
                    outcome: dict[str, Any] = {"type": "canceled"}
                else:
                    why = f"another request of the batch is invalid: {summary}"
                    outcome = errored(400, reasons.get(number, why))
                yield orjson.dumps({"custom_id": custom_id, "result": outcome}) + b"\n"
