"""OpenAI's Responses format, for text: a request checked and turned into a chat
completion body, and a chat completion turned into a response object. No I/O.

What is served: `input` as a string or message items (text content), `instructions`,
`max_output_tokens`, `temperature`, `top_p`, `text.format` (text, json_object,
json_schema), `metadata`, `store`, `background`, `previous_response_id` (the caller
puts the earlier turns into `input` with `continued`), `service_tier`, `user`. Tools,
reasoning and non-text content are refused, naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slackwater.domain.batch import LineError

ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text", "text")
UNSUPPORTED = ("tools", "tool_choice", "reasoning", "prompt", "conversation", "include")
STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled", "incomplete")
MIN_OUTPUT_TOKENS = 1


def _error(field: str, message: str, line: int | None) -> LineError:
    return LineError("invalid_value", f"body.{field}: {message}", line=line, param=f"body.{field}")


def _text(content: Any, field: str, errors: list[LineError], line: int | None) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for index, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in TEXT_PARTS or not isinstance(part.get("text"), str):
                errors.append(
                    _error(
                        f"{field}[{index}]",
                        f"only text content is supported ({', '.join(TEXT_PARTS)}), got {kind!r}",
                        line,
                    )
                )
                return None
            parts.append(part["text"])
        return "".join(parts)
    errors.append(_error(field, "must be a string or a list of content parts", line))
    return None


def messages_of(
    body: dict[str, Any], line: int | None = None
) -> list[dict[str, str]] | list[LineError]:
    """The conversation a Responses body asks about, as chat messages: its instructions,
    then its input items (a string is one user message)."""
    errors: list[LineError] = []
    messages: list[dict[str, str]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            errors.append(_error("instructions", "must be a string", line))
        elif instructions:
            messages.append({"role": "system", "content": instructions})
    given = body.get("input")
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    elif isinstance(given, list) and given:
        for index, item in enumerate(given):
            field = f"input[{index}]"
            if not isinstance(item, dict) or item.get("type", "message") != "message":
                kind = item.get("type") if isinstance(item, dict) else type(item).__name__
                errors.append(
                    _error(field, f"only message items are supported, got {kind!r}", line)
                )
                continue
            role = item.get("role")
            if role not in ROLES:
                errors.append(_error(f"{field}.role", f"must be one of {', '.join(ROLES)}", line))
                continue
            text = _text(item.get("content"), f"{field}.content", errors, line)
            if text is not None:
                chat_role = "system" if role == "developer" else role
                messages.append({"role": chat_role, "content": text})
    else:
        errors.append(_error("input", "must be a string or a non-empty list of items", line))
    return errors or messages


def check(body: Any, line: int | None = None) -> list[LineError]:
    """What is wrong with a Responses body, field by field (empty: nothing)."""
    if not isinstance(body, dict):
        return [LineError("invalid_type", "body must be a JSON object", line=line, param="body")]
    errors: list[LineError] = []
    model = body.get("model")
    if not isinstance(model, str) or not model:
        errors.append(_error("model", "is required (a string)", line))
    for name in UNSUPPORTED:
        if body.get(name):
            errors.append(_error(name, "is not supported by this server", line))
    limit = body.get("max_output_tokens")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or limit < MIN_OUTPUT_TOKENS
    ):
        errors.append(
            _error("max_output_tokens", f"must be an integer >= {MIN_OUTPUT_TOKENS}", line)
        )
    for name, high in (("temperature", 2.0), ("top_p", 1.0)):
        value = body.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high
        ):
            errors.append(_error(name, f"must be a number between 0 and {high:g}", line))
    for name in ("store", "background", "stream"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            errors.append(_error(name, "must be true or false", line))
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if fmt is not None and (
        not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema")
    ):
        errors.append(_error("text.format.type", "must be text, json_object or json_schema", line))
    if (
        isinstance(fmt, dict)
        and fmt.get("type") == "json_schema"
        and not isinstance(fmt.get("schema"), dict)
    ):
        errors.append(_error("text.format.schema", "is required for json_schema (an object)", line))
    messages = messages_of(body, line)
    if messages and isinstance(messages[0], LineError):
        errors.extend(m for m in messages if isinstance(m, LineError))
    return errors


def in_batch(body: dict[str, Any], line: int | None) -> list[LineError]:
    """What a batch line may not ask for: a batch answers each line on its own, in one
    output file."""
    return [
        _error(name, f"is not supported in a batch line ({why})", line)
        for name, why in (
            ("previous_response_id", "send the conversation in input"),
            ("background", "a batch runs in the background"),
            ("stream", "answers are written to the output file"),
        )
        if body.get(name)
    ]


def chat_of(body: dict[str, Any]) -> dict[str, Any]:
    """A checked Responses body as a chat completion body."""
    messages = messages_of(body)
    assert not (messages and isinstance(messages[0], LineError)), "check() the body first"
    chat: dict[str, Any] = {"model": body["model"], "messages": list(messages)}
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    # Chat fields that OpenAI-compatible servers take on /v1/responses too.
    for name in (
        "temperature", "top_p", "user", "seed", "stop", "frequency_penalty",
        "presence_penalty", "logit_bias",
    ):  # fmt: skip
        if body.get(name) is not None:
            chat[name] = body[name]
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif fmt.get("type") == "json_schema":
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": fmt.get("name", "answer"),
                "schema": fmt["schema"],
                "strict": bool(fmt.get("strict", False)),
            },
        }
    return chat


def items_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A checked body's input as a list of message items."""
    given = body.get("input")
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    return [item for item in given or [] if isinstance(item, dict)]


def continued(
    body: dict[str, Any], earlier: dict[str, Any], answer: dict[str, Any]
) -> dict[str, Any]:
    """`body` continuing the conversation of an `earlier` request and its `answer`:
    their turns come first in its input (instructions are not carried over, as in
    OpenAI's API)."""
    turns: Sequence[dict[str, Any]] = [
        *items_of(earlier),
        {"role": "assistant", "content": output_text(answer)},
    ]
    return {**body, "input": [*turns, *items_of(body)]}


def output_text(response: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "")
        for item in response.get("output") or []
        if item.get("type") == "message"
        for part in item.get("content") or []
        if part.get("type") == "output_text"
    )


def response_of(
    request: dict[str, Any],
    *,
    id: str,
    status: str,
    created_at: int,
    service_tier: str,
    chat: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """The response object for `request` (a Responses body), with the chat completion
    that answered it, if there is one yet."""
    output: list[dict[str, Any]] = []
    usage = None
    incomplete = None
    if chat is not None:
        choice = (chat.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        if choice.get("finish_reason") == "length":
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        output = [
            {
                "type": "message",
                "id": "msg_" + id.removeprefix("resp_"),
                "status": "completed" if incomplete is None else "incomplete",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
        counts = chat.get("usage") or {}
        prompt, completion = (
            int(counts.get("prompt_tokens") or 0),
            int(counts.get("completion_tokens") or 0),
        )
        usage = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        }
    return {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "completed_at": completed_at,
        "status": status,
        "background": bool(request.get("background", False)),
        "error": error,
        "incomplete_details": incomplete,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "metadata": request.get("metadata") or {},
        "model": (chat or {}).get("model") or request.get("model"),
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": request.get("previous_response_id"),
        "service_tier": service_tier,
        "store": request.get("store", True),
        "temperature": request.get("temperature"),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": request.get("top_p"),
        "truncation": "disabled",
        "usage": usage,
        "user": request.get("user"),
    }


def restamped(
    answer: dict[str, Any], *, id: str, created_at: int, service_tier: str
) -> dict[str, Any]:
    """An engine's response object as the response the caller was given: its id, when
    it was created, its tier (the engine names a fresh one of each)."""
    output = [
        {**item, "id": "msg_" + id.removeprefix("resp_")} if item.get("type") == "message" else item
        for item in answer.get("output") or []
    ]
    return {
        **answer,
        "id": id,
        "created_at": created_at,
        "service_tier": service_tier,
        "output": output,
    }


def ended(
    request: dict[str, Any],
    *,
    id: str,
    created_at: int,
    completed_at: int,
    service_tier: str,
    status_code: int,
    body: dict[str, Any],
    cancelled: bool = False,
) -> dict[str, Any]:
    """The final response object of a queued response, from what its request ended with:
    an engine's response object, an error, or nothing (cancelled)."""
    if cancelled:
        return response_of(
            request, id=id, status="cancelled", created_at=created_at, service_tier=service_tier
        )
    if 200 <= status_code < 300:
        answer = restamped(body, id=id, created_at=created_at, service_tier=service_tier)
        return {**answer, "completed_at": completed_at}
    given = body.get("error")
    error: dict[str, Any] = given if isinstance(given, dict) else {}
    return response_of(
        request,
        id=id,
        status="failed",
        created_at=created_at,
        service_tier=service_tier,
        error={
            "code": str(error.get("code") or "server_error"),
            "message": str(error.get("message") or "the request failed"),
        },
    )
