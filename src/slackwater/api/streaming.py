"""`stream: true` on chat and completions: the answer as server-sent events, in OpenAI's
chunk format, ending with `data: [DONE]`.

A model that writes in steps (a local one) sends its text as it grows; another sends
its whole answer as one chunk when it has it. With `stream_options.include_usage`, a
last chunk carries the usage. An error before the first word is an ordinary HTTP error;
one after it is an `error` event, as OpenAI sends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import orjson
from fastapi.responses import JSONResponse, StreamingResponse

from slackwater.domain.batch import Endpoint
from slackwater.domain.bodies import EXTENSION
from slackwater.domain.errors import BudgetExceeded
from slackwater.domain.ids import new_id
from slackwater.domain.request import Outcome

Event = str | list[Outcome] | BaseException


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class Chunks:
    """The chunks of one streamed answer."""

    def __init__(self, endpoint: str, model: str) -> None:
        self.chat = endpoint == Endpoint.CHAT
        self.id = new_id("chatcmpl" if self.chat else "cmpl")
        self.created = int(time.time())
        self.model = model

    def _chunk(self, choice: dict[str, Any], **extra: Any) -> bytes:
        return _event(
            {
                "id": self.id,
                "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created,
                "model": self.model,
                "choices": [choice] if choice else [],
                **extra,
            }
        )

    def text(self, text: str, finish: str | None = None, **extra: Any) -> bytes:
        if self.chat:
            delta = {"content": text} if text or finish is None else {}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return self._chunk(choice, **extra)

    def start(self) -> bytes:
        if not self.chat:
            return b""
        choice = {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
        return self._chunk(choice)

    def usage(self, outcome: Outcome) -> bytes:
        usage = outcome.body.get("usage") or {}
        return self._chunk({}, usage=usage)


def answer_of(outcome: Outcome) -> tuple[str, str | None]:
    choice = (outcome.body.get("choices") or [{}])[0]
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    return text or "", choice.get("finish_reason")


async def stream(
    work: Coroutine[Any, Any, list[Outcome]],
    endpoint: str,
    model: str,
    budget: float,
    *,
    include_usage: bool = False,
    route: dict[str, Any] | None = None,
    events: asyncio.Queue[Event] | None = None,
) -> StreamingResponse | JSONResponse:
    """Run `work` (which puts the text so far on `events` as it grows) and stream it."""
    queue: asyncio.Queue[Event] = events if events is not None else asyncio.Queue()

    async def produce() -> None:
        try:
            queue.put_nowait(await asyncio.wait_for(work, budget))
        except TimeoutError:
            queue.put_nowait(
                BudgetExceeded(f"the request ran past its compute budget of {budget:g} s")
            )
        except Exception as exc:  # sent on to the caller, as an event
            queue.put_nowait(exc)

    task = asyncio.create_task(produce())
    first = await queue.get()
    if isinstance(first, BaseException):
        raise first
    if isinstance(first, list) and not first[0].ok:
        return JSONResponse(first[0].body, status_code=first[0].status_code)
    chunks = Chunks(endpoint, model)

    async def body() -> AsyncIterator[bytes]:
        sent = ""
        item: Event = first
        try:
            yield chunks.start()
            while True:
                if isinstance(item, str):
                    if item.startswith(sent) and len(item) > len(sent):
                        yield chunks.text(item[len(sent) :])
                        sent = item
                elif isinstance(item, list):
                    outcome = item[0]
                    if not outcome.ok:
                        yield _event(outcome.body)
                        break
                    text, finish = answer_of(outcome)
                    rest = text[len(sent) :] if text.startswith(sent) else ""
                    if rest:
                        yield chunks.text(rest)
                    extra = {EXTENSION: {"route": route}} if route is not None else {}
                    yield chunks.text("", finish or "stop", **extra)
                    if include_usage:
                        yield chunks.usage(outcome)
                    break
                else:
                    message = getattr(item, "message", str(item))
                    yield _event({"error": {"message": message, "type": "server_error"}})
                    break
                item = await queue.get()
            yield b"data: [DONE]\n\n"
        finally:
            if not task.done():  # the caller went away: stop the engine work
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
