"""Anthropic's Messages format to chat completions and back."""

from __future__ import annotations

from slackwater.domain.anthropic import (
    chat_from_params,
    message_from_chat,
    result_from_output,
)


def test_params_become_a_chat_body() -> None:
    body = chat_from_params(
        {
            "model": "m",
            "max_tokens": 20,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
                {"role": "user", "content": "again"},
            ],
            "stop_sequences": ["\n"],
            "temperature": 0.5,
            "metadata": {"user_id": "u1"},
        }
    )
    assert body == {
        "model": "m",
        "max_tokens": 20,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ],
        "stop": ["\n"],
        "temperature": 0.5,
        "user": "u1",
    }


def test_bad_params_are_named_by_field() -> None:
    errors = chat_from_params(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "x"},
                {"role": "user", "content": [{"type": "image", "source": {}}]},
            ],
            "temperature": 3,
            "tools": [{"name": "t"}],
        },
        "requests.4.params",
    )
    assert isinstance(errors, list)
    params = [e.param for e in errors]
    assert params == [
        "requests.4.params.max_tokens",
        "requests.4.params.messages.0.role",
        "requests.4.params.messages.1.content.0",
        "requests.4.params.temperature",
        "requests.4.params.tools",
    ]
    assert "only text content blocks" in errors[2].message


def test_answers_and_result_lines() -> None:
    chat = {
        "id": "chatcmpl_abc",
        "choices": [{"message": {"content": "Paris."}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2},
    }
    message = message_from_chat(chat, "small")
    assert message["id"] == "msg_abc" and message["content"] == [{"type": "text", "text": "Paris."}]
    assert message["stop_reason"] == "max_tokens" and message["usage"] == {
        "input_tokens": 7,
        "output_tokens": 2,
    }
    ok = {"custom_id": "a", "response": {"status_code": 200, "body": {**chat, "model": "m"}}}
    assert result_from_output(ok)["result"]["type"] == "succeeded"
    bad = {
        "custom_id": "b",
        "response": {"status_code": 404, "body": {"error": {"message": "no such model"}}},
    }
    assert result_from_output(bad)["result"]["error"]["error"] == {
        "type": "not_found_error",
        "message": "no such model",
    }
    cancelled = {"custom_id": "c", "response": None, "error": {"code": "batch_cancelled"}}
    assert result_from_output(cancelled) == {"custom_id": "c", "result": {"type": "canceled"}}
