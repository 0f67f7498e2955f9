"""The Anthropic-compatible API: Messages (`POST /v1/messages`, streamed or not) and
Message Batches (`/v1/messages/batches`), served by the same queue, router, ledger and
engines as everything else. Keys come as `x-api-key` (or `Authorization: Bearer`); errors
are in Anthropic's shape (api/errors.py).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from slackwater.api.deps import Project, services
from slackwater.api.inference import while_connected
from slackwater.api.streaming import Event, sse, stream
from slackwater.domain.anthropic import chat_from_params, error_body, message_from_chat
from slackwater.domain.batch import Batch, BatchStatus, Endpoint
from slackwater.domain.errors import InvalidRequest
from slackwater.domain.ids import new_id
from slackwater.domain.request import Outcome
from slackwater.runtime.message_batches import message_batch_id as public_id
from slackwater.runtime.services import Services

router = APIRouter(prefix="/v1/messages", tags=["anthropic"])
JsonBody = Annotated[dict[str, Any], Body()]
Svc = Annotated[Services, Depends(services)]


def _moment(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


class MessageEvents:
    """Anthropic's events of one streamed message."""

    def __init__(self, model: str) -> None:
        self.id = new_id("msg")
        self.model = model

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        return sse({"type": "message_start", "message": message}, "message_start") + sse(
            block, "content_block_start"
        )

    def text(self, text: str) -> bytes:
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        }
        return sse(delta, "content_block_delta")

    def finish(self, outcome: Outcome) -> bytes:
        message = message_from_chat(outcome.body, self.model)
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": message["usage"],
        }
        return (
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            + sse(delta, "message_delta")
            + sse({"type": "message_stop"}, "message_stop")
        )

    def error(self, body: dict[str, Any]) -> bytes:
        message = (body.get("error") or {}).get("message", "the request failed")
        return sse(error_body(500, message), "error")


def _refuse(outcome: Outcome) -> Response:
    message = (outcome.body.get("error") or {}).get("message", f"HTTP {outcome.status_code}")
    return JSONResponse(error_body(outcome.status_code, message), status_code=outcome.status_code)


@router.post("")
async def create_message(request: Request, body: JsonBody, project: Project, svc: Svc) -> Response:
    streamed = body.get("stream", False)
    if not isinstance(streamed, bool):
        raise InvalidRequest("stream: must be true or false", param="stream")
    chat = chat_from_params({k: v for k, v in body.items() if k != "stream"})
    if isinstance(chat, list):
        raise InvalidRequest(chat[0].message, param=chat[0].param)
    requested = str(body["model"])
    ready = await svc.realtime.prepare(Endpoint.CHAT.value, chat)
    if streamed:
        events: asyncio.Queue[Event] = asyncio.Queue()
        work = svc.engines.run(
            ready.model.name,
            Endpoint.CHAT.value,
            [ready.body],
            realtime=True,
            project=project,
            on_text=events.put_nowait,
        )
        return await stream(work, MessageEvents(requested), svc.request_seconds, events, _refuse)
    work = svc.engines.run(
        ready.model.name, Endpoint.CHAT.value, [ready.body], realtime=True, project=project
    )
    finished = await while_connected(request, work, svc.request_seconds)
    if finished is None:  # the caller went away; its engine work was cancelled
        return JSONResponse(error_body(499, "client closed the request"), status_code=499)
    [outcome] = finished
    if not outcome.ok:
        return _refuse(outcome)
    return JSONResponse(message_from_chat(outcome.body, requested))


# -- Message Batches ----------------------------------------------------------------------


async def _message_batch(batch: Batch, request: Request, svc: Services) -> dict[str, Any]:
    counts = await svc.message_batches.counts(batch)
    ended = batch.status.is_terminal
    status = (
        "ended"
        if ended
        else "canceling"
        if batch.status is BatchStatus.CANCELLING
        else "in_progress"
    )
    ended_at = batch.completed_at or batch.cancelled_at or batch.expired_at or batch.failed_at
    batch_id = public_id(batch)
    return {
        "id": batch_id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": counts.__dict__,
        "ended_at": _moment(ended_at),
        "created_at": _moment(batch.created_at),
        "expires_at": _moment(batch.expires_at),
        "archived_at": None,
        "cancel_initiated_at": _moment(batch.cancelling_at),
        "results_url": (
            f"{str(request.base_url).rstrip('/')}/v1/messages/batches/{batch_id}/results"
            if ended
            else None
        ),
    }


@router.post("/batches")
async def create_message_batch(
    request: Request, body: JsonBody, project: Project, svc: Svc
) -> dict[str, Any]:
    batch = await svc.message_batches.create(project, body.get("requests"))
    if svc.monitor is not None:
        svc.monitor.wake()  # validate it now, not at the next tick
    return await _message_batch(batch, request, svc)


@router.get("/batches")
async def list_message_batches(
    request: Request,
    project: Project,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after_id: str | None = None,
) -> dict[str, Any]:
    page = await svc.message_batches.list(project, limit=limit, after=after_id)
    data = [await _message_batch(batch, request, svc) for batch in page.items]
    return {
        "data": data,
        "has_more": page.has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


@router.get("/batches/{message_batch_id}")
async def get_message_batch(
    message_batch_id: str, request: Request, project: Project, svc: Svc
) -> dict[str, Any]:
    batch = await svc.message_batches.get(project, message_batch_id)
    return await _message_batch(batch, request, svc)


@router.post("/batches/{message_batch_id}/cancel")
async def cancel_message_batch(
    message_batch_id: str, request: Request, project: Project, svc: Svc
) -> dict[str, Any]:
    batch = await svc.message_batches.cancel(project, message_batch_id)
    return await _message_batch(batch, request, svc)


@router.delete("/batches/{message_batch_id}")
async def delete_message_batch(message_batch_id: str, project: Project, svc: Svc) -> dict[str, Any]:
    batch = await svc.message_batches.delete(project, message_batch_id)
    return {"id": public_id(batch), "type": "message_batch_deleted"}


@router.get("/batches/{message_batch_id}/results")
async def message_batch_results(
    message_batch_id: str, project: Project, svc: Svc
) -> StreamingResponse:
    lines = await svc.message_batches.results(project, message_batch_id)
    return StreamingResponse(lines, media_type="application/x-jsonl")
