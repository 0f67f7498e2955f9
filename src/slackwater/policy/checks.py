"""Checks on an answer: does it do what the request asked? Pure functions.

A failed check on an auto-routed request escalates it to the next model up (the cascade).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jsonschema

REFUSALS = re.compile(
    r"^\s*(i'?m sorry,? but |sorry,? )?i (can(no|')t|am unable to|won'?t) "
    r"(help|assist|comply|provide|do that)",
    re.IGNORECASE,
)


def answer_text(response: Mapping[str, Any]) -> tuple[str | None, str | None, Any]:
    """(text, finish_reason, refusal) of the first choice, for chat and completions."""
    choices = response.get("choices") or []
    if not choices:
        return None, None, None
    choice = choices[0]
    message = choice.get("message")
    if isinstance(message, dict):
        return message.get("content"), choice.get("finish_reason"), message.get("refusal")
    return choice.get("text"), choice.get("finish_reason"), None


# A user-registered check: (request body, response body) -> why it fails, or None.
Check = Callable[[Mapping[str, Any], Mapping[str, Any]], "str | None"]


def failed_check(
    request: Mapping[str, Any],
    response: Mapping[str, Any],
    regex: str | None = None,
    checks: Sequence[tuple[str, Check]] = (),
) -> str | None:
    """Why the answer fails, or None when it passes."""
    text, finish_reason, refusal = answer_text(response)
    if text is None and refusal is None:
        return None  # not a text answer (embeddings): nothing to check
    if refusal:
        return "refusal"
    if finish_reason == "length":
        return "cut off at max_tokens (finish_reason length)"
    if not text or not text.strip():
        return "empty answer"
    if REFUSALS.match(text):
        return "refusal"
    response_format = request.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        try:
            value = json.loads(text)
        except ValueError as exc:
            return f"invalid JSON: {exc}"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if response_format.get("type") == "json_schema" and isinstance(schema, dict):
            try:
                jsonschema.validate(value, schema)
            except jsonschema.ValidationError as exc:
                return f"JSON does not match the schema: {exc.message}"
            except jsonschema.SchemaError as exc:
                return f"the request's JSON schema is invalid: {exc.message}"
    if regex is not None and not re.search(regex, text):
        return f"answer does not match {regex!r}"
    for name, check in checks:
        why = check(request, response)
        if why:
            return f"check {name}: {why}"
    return None
