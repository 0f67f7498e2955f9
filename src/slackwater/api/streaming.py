"""`stream: true`: an answer as server-sent events, as it is written.

A model that writes in steps (a local one) sends its text as it grows; another sends
its whole answer as one piece when it has it. An error before the first word is an
ordinary HTTP error; one after it is an `error` event. The events' format is a `Wire`:
OpenAI's chunks (`Chunks`, ending with `data: [DONE]`) or Anthropic's message events
(api/anthropic.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Protocol

import orjson
from fastapi.responses import Response, StreamingResponse

from slackwater.domain.batch import Endpoint
from slackwater.domain.bodies import EXTENSION
from slackwater.domain.errors import BudgetExceeded
from slackwater.domain.ids import new_id
from slackwater.domain.request import Outcome

Event = str | list[Outcome] | BaseException


def sse(data: dict[str, Any], name: str | None = None) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


class Wire(Protocol):
    """How one streamed answer is written."""

    def start(self) -> bytes: ...
    def text(self, text: str) -> bytes: ...
    def finish(self, outcome: Outcome) -> bytes: ...
    def error(self, body: dict[str, Any]) -> bytes: ...


class Chunks:
    """OpenAI's chunks of one streamed chat or completion."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        include_usage: bool = False,
        route: dict[str, Any] | None = None,
        service_tier: str = "default",
    ) -> None:
        self.chat = endpoint == Endpoint.CHAT
        self.service_tier = service_tier
        self.id = new_id("chatcmpl" if self.chat else "cmpl")
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.route = route

    def _chunk(self, choice: dict[str, Any], **extra: Any) -> bytes:
        return sse(
            {
                "id": self.id,
                "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created,
                "model": self.model,
                "service_tier": self.service_tier,
                "choices": [choice] if choice else [],
                **extra,
            }
        )

    def text(self, text: str) -> bytes:
        return self._text(text)

    def _text(self, text: str, finish: str | None = None, **extra: Any) -> bytes:
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

    def finish(self, outcome: Outcome) -> bytes:
        _, finish = answer_of(outcome)
        extra = {EXTENSION: {"route": self.route}} if self.route is not None else {}
        last = self._text("", finish or "stop", **extra)
        if self.include_usage:
            last += self._chunk({}, usage=outcome.body.get("usage") or {})
        return last + b"data: [DONE]\n\n"

    def error(self, body: dict[str, Any]) -> bytes:
        return sse(body) + b"data: [DONE]\n\n"


def answer_of(outcome: Outcome) -> tuple[str, str | None]:
    choice = (outcome.body.get("choices") or [{}])[0]
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    return text or "", choice.get("finish_reason")


async def stream(
    work: Coroutine[Any, Any, list[Outcome]],
    wire: Wire,
    budget: float,
    events: asyncio.Queue[Event],
    refuse: Callable[[Outcome], Response],
) -> Response:
    """Run `work` (which puts the text so far on `events` as it grows) and stream it;
    an answer that fails before its first word is `refuse`d as a plain HTTP error."""
    queue = events

    async def produce() -> None:
        try:
            queue.put_nowait(await asyncio.wait_for(work, budget))
        except TimeoutError:
            over = f"the request ran past its compute budget of {budget:g} s"
            queue.put_nowait(BudgetExceeded(over))
        except Exception as exc:  # sent on to the caller, as an event
            queue.put_nowait(exc)

    task = asyncio.create_task(produce())
    first = await queue.get()
    if isinstance(first, BaseException):
        raise first
    if isinstance(first, list) and not first[0].ok:
        return refuse(first[0])

    async def body() -> AsyncIterator[bytes]:
        sent = ""
        item: Event = first
        try:
            yield wire.start()
            while True:
                if isinstance(item, str):
                    if item.startswith(sent) and len(item) > len(sent):
                        yield wire.text(item[len(sent) :])
                        sent = item
                elif isinstance(item, list):
                    outcome = item[0]
                    if not outcome.ok:
                        yield wire.error(outcome.body)
                        return
                    text, _ = answer_of(outcome)
                    rest = text[len(sent) :] if text.startswith(sent) else ""
                    if rest:
                        yield wire.text(rest)
                    yield wire.finish(outcome)
                    return
                else:
                    message = getattr(item, "message", str(item))
                    yield wire.error({"error": {"message": message, "type": "server_error"}})
                    return
                item = await queue.get()
        finally:
            if not task.done():  # the caller went away: stop the engine work
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
