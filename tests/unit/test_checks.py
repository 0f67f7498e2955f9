from __future__ import annotations

from typing import Any

import pytest

from slackwater.policy.checks import failed_check

SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}


def chat(content: str | None, finish: str = "stop", refusal: str | None = None) -> dict[str, Any]:
    message = {"role": "assistant", "content": content, "refusal": refusal}
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish}]}


@pytest.mark.parametrize(
    ("request_body", "response", "expected"),
    [
        ({}, chat("fine"), None),
        ({}, chat(""), "empty answer"),
        ({}, chat("   "), "empty answer"),
        ({}, chat("partial", finish="length"), "cut off at max_tokens (finish_reason length)"),
        ({}, chat(None, refusal="no"), "refusal"),
        ({}, chat("I'm sorry, but I can't help with that."), "refusal"),
        ({}, chat("I cannot assist with this request"), "refusal"),
        ({"response_format": {"type": "json_object"}}, chat('{"a": 1}'), None),
        ({"response_format": {"type": "json_object"}}, chat("{oops"), "invalid JSON"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}},
            chat('{"n": 3}'),
            None,
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}},
            chat('{"n": "three"}'),
            "JSON does not match the schema",
        ),
        ({}, {"object": "list", "data": []}, None),  # embeddings: nothing to check
        ({}, {"choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}]}, None),
    ],
)
def test_checks(
    request_body: dict[str, Any], response: dict[str, Any], expected: str | None
) -> None:
    found = failed_check(request_body, response)
    assert (found is None) == (expected is None), found
    if expected is not None:
        assert found is not None and found.startswith(expected)


def test_regex_check() -> None:
    assert failed_check({}, chat("answer: 42"), r"\d+") is None
    assert failed_check({}, chat("no digits"), r"\d+") == "answer does not match '\\\\d+'"
