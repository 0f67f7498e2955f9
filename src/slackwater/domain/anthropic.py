"""Anthropic's Messages format and OpenAI's chat completions, each to the other.

slackwater runs everything as chat completions. The Anthropic-compatible API turns
Messages params into a chat body and the answer back into a message (the
`anthropic_batch` engine does the reverse, to send chat bodies to Anthropic). No I/O.
"""

from __future__ import annotations

import re
from typing import Any

from slackwater.domain.batch import LineError

# Anthropic's stop reasons and OpenAI's finish reasons.
STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}
# Anthropic error types by HTTP status, as its API answers.
ERROR_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def error_type(status: int) -> str:
    return ERROR_TYPE.get(status, "api_error")


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def _text(content: Any, where: str, errors: list[LineError]) -> str | None:
    """Text content: a string, or a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for index, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind != "text" or not isinstance(block.get("text"), str):
                errors.append(
                    LineError(
                        "invalid_request_error",
                        f"{where}.{index}: only text content blocks are supported, got {kind!r}",
                        param=f"{where}.{index}",
                    )
                )
                return None
            parts.append(block["text"])
        return "".join(parts)
    errors.append(
        LineError(
            "invalid_request_error", f"{where}: must be a string or a list of blocks", param=where
        )
    )
    return None


def chat_from_params(params: Any, where: str = "") -> dict[str, Any] | list[LineError]:
    """Messages API params as a chat completion body, or what is wrong with them (each
    error naming its field, under `where`)."""
    prefix = f"{where}." if where else ""
    errors: list[LineError] = []

    def fail(field: str, message: str) -> None:
        errors.append(
            LineError("invalid_request_error", f"{prefix}{field}: {message}", param=prefix + field)
        )

    if not isinstance(params, dict):
        return [LineError("invalid_request_error", f"{where or 'body'}: must be an object")]
    model = params.get("model")
    if not isinstance(model, str) or not model:
        fail("model", "Field required")
    max_tokens = params.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        fail("max_tokens", "must be a whole number of at least 1")
    messages = params.get("messages")
    chat: list[dict[str, Any]] = []
    if not isinstance(messages, list) or not messages:
        fail("messages", "must be a non-empty list")
        messages = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            fail(f"messages.{index}.role", "must be 'user' or 'assistant'")
            continue
        text = _text(message.get("content"), f"{prefix}messages.{index}.content", errors)
        if text is not None:
            chat.append({"role": role, "content": text})
    system = params.get("system")
    if system is not None:
        text = _text(system, f"{prefix}system", errors)
        if text:
            chat.insert(0, {"role": "system", "content": text})
    for name, high in (("temperature", 1.0), ("top_p", 1.0)):
        value = params.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high
        ):
            fail(name, f"must be a number between 0 and {high:g}")
    stop = params.get("stop_sequences")
    if stop is not None and (
        not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)
    ):
        fail("stop_sequences", "must be a list of strings")
    for unsupported in ("tools", "tool_choice", "thinking"):
        if params.get(unsupported):
            fail(unsupported, "is not supported by this server")
    if errors:
        return errors
    body: dict[str, Any] = {"model": model, "messages": chat, "max_tokens": max_tokens}
    for name in ("temperature", "top_p"):
        if params.get(name) is not None:
            body[name] = params[name]
    if stop:
        body["stop"] = stop
    user = (params.get("metadata") or {}).get("user_id")
    if isinstance(user, str):
        body["user"] = user
    return body


def message_from_chat(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A chat completion as an Anthropic message; `model` as the caller named it. (Chat
    completions do not say which stop sequence ended an answer: `stop_sequence` stays
    null, the reason `end_turn`.)"""
    choice = (body.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") or ""
    finish = choice.get("finish_reason") or "stop"
    reason = STOP_REASON.get(finish, "end_turn")
    usage = body.get("usage") or {}
    return {
        "id": "msg_" + str(body.get("id", "")).split("_", 1)[-1].split("-", 1)[-1],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": int(usage.get("prompt_tokens") or 0),
            "output_tokens": int(usage.get("completion_tokens") or 0),
        },
    }


def result_from_output(line: dict[str, Any]) -> dict[str, Any]:
    """One line of a batch's output or error file as a Message Batch result line."""
    custom_id = line.get("custom_id")
    response = line.get("response")
    if response is None:
        code = str((line.get("error") or {}).get("code"))
        kind = {"batch_cancelled": "canceled", "batch_expired": "expired"}.get(code, "errored")
        if kind != "errored":
            return {"custom_id": custom_id, "result": {"type": kind}}
        message = (line.get("error") or {}).get("message", "the request was not run")
        return {"custom_id": custom_id, "result": errored(500, message)}
    body = response.get("body") or {}
    status = int(response.get("status_code") or 500)
    if status >= 400:
        message = (body.get("error") or {}).get("message") or f"HTTP {status}"
        return {"custom_id": custom_id, "result": errored(status, message)}
    message = message_from_chat(body, str(body.get("model", "")))
    return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}


def errored(status: int, message: str) -> dict[str, Any]:
    return {"type": "errored", "error": error_body(status, message)}
