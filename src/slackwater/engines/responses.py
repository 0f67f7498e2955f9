"""OpenAI response bodies, built the same way by every local engine."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Sequence
from typing import Any

from slackwater.domain.ids import new_id
from slackwater.domain.request import Outcome, Usage


def chat_completion(model: str, text: str, finish_reason: str, usage: Usage) -> Outcome:
    body = {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": _usage(usage),
    }
    return Outcome(200, body, usage)


def completion(model: str, text: str, finish_reason: str, usage: Usage) -> Outcome:
    body = {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
        "usage": _usage(usage),
    }
    return Outcome(200, body, usage)


def embeddings(
    model: str, vectors: Sequence[Sequence[float]], prompt_tokens: int, encoding: str | None
) -> Outcome:
    data: list[dict[str, Any]] = []
    for index, vector in enumerate(vectors):
        value: Any = list(vector)
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    usage = Usage(prompt_tokens=prompt_tokens)
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
    return Outcome(200, body, usage)


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def inputs_of(body: dict[str, Any]) -> list[Any]:
    """The list of inputs of an embeddings body (a single input becomes a list of one)."""
    value = body["input"]
    if isinstance(value, str) or (value and isinstance(value[0], int)):
        return [value]
    return list(value)


def apply_stop(text: str, stop: str | list[str] | None) -> tuple[str, bool]:
    """Cut `text` at the first stop sequence; says whether one was found."""
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
