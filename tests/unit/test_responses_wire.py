"""OpenAI's Responses format to chat completions and back, and service tiers."""

from __future__ import annotations

import pytest

from slackwater.domain import responses
from slackwater.domain.errors import InvalidRequest
from slackwater.domain.tiers import default_tiers, tier_named


def chat_answer(text: str, finish: str = "stop") -> dict[str, object]:
    return {
        "model": "m-2",
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3},
    }


def test_a_responses_body_becomes_a_chat_body() -> None:
    body = {
        "model": "m",
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Answer in French."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "salut"}]},
            {"role": "user", "content": "again"},
        ],
        "max_output_tokens": 40,
        "temperature": 0.2,
        "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}}},
        "metadata": {"k": "v"},
    }
    assert responses.check(body) == []
    assert responses.chat_of(body) == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "salut"},
            {"role": "user", "content": "again"},
        ],
        "max_tokens": 40,
        "temperature": 0.2,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": {"type": "object"}, "strict": False},
        },
    }
    assert responses.chat_of({"model": "m", "input": "x"})["messages"] == [
        {"role": "user", "content": "x"}
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "body.model"),
        ({"model": "m"}, "body.input"),
        ({"model": "m", "input": []}, "body.input"),
        ({"model": "m", "input": [{"type": "function_call_output"}]}, "body.input[0]"),
        ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "body.input[0].role"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "body.input[0].content[0]",
        ),
        ({"model": "m", "input": "x", "reasoning": {"effort": "low"}}, "body.reasoning"),
        ({"model": "m", "input": "x", "max_output_tokens": True}, "body.max_output_tokens"),
        ({"model": "m", "input": "x", "temperature": 3}, "body.temperature"),
        ({"model": "m", "input": "x", "background": "yes"}, "body.background"),
        ({"model": "m", "input": "x", "instructions": 5}, "body.instructions"),
        (
            {"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}},
            "body.text.format.schema",
        ),
    ],
)
def test_what_is_refused_is_named(body: dict[str, object], param: str) -> None:
    [error] = responses.check(body, line=3)
    assert error.param == param and error.line == 3
    assert param.removeprefix("body.").split("[")[0] in error.message


def test_a_chat_answer_becomes_a_response() -> None:
    request = {"model": "m", "input": "hi", "metadata": {"k": "v"}, "background": True}
    made = responses.response_of(
        request,
        id="resp_1",
        status="completed",
        created_at=10,
        service_tier="flex",
        chat=chat_answer("hello"),
        completed_at=12,
    )
    assert made["model"] == "m-2" and made["status"] == "completed"
    assert made["background"] is True and made["metadata"] == {"k": "v"}
    assert made["output"][0]["id"] == "msg_1"
    assert responses.output_text(made) == "hello"
    assert made["usage"]["input_tokens"] == 7 and made["usage"]["total_tokens"] == 10
    cut = responses.response_of(
        request,
        id="resp_2",
        status="completed",
        created_at=1,
        service_tier="d",
        chat=chat_answer("he", "length"),
    )
    assert cut["status"] == "incomplete" and cut["incomplete_details"] == {
        "reason": "max_output_tokens"
    }


def test_a_queued_response_ends_as_its_request_did() -> None:
    request = {"model": "m", "input": "hi", "background": True}
    engine_answer = responses.response_of(
        request, id="resp_engine", status="completed", created_at=99, service_tier="default",
        chat=chat_answer("hello"),
    )  # fmt: skip
    kept = {"id": "resp_mine", "created_at": 5, "completed_at": 9, "service_tier": "flex"}
    done = responses.ended(request, status_code=200, body=engine_answer, **kept)
    assert (done["id"], done["created_at"], done["completed_at"]) == ("resp_mine", 5, 9)
    assert done["service_tier"] == "flex" and done["output"][0]["id"] == "msg_mine"
    failed = responses.ended(
        request, status_code=500, body={"error": {"message": "boom", "code": "oops"}}, **kept
    )
    assert failed["status"] == "failed" and failed["error"] == {"code": "oops", "message": "boom"}
    cancelled = responses.ended(request, status_code=0, body={}, cancelled=True, **kept)
    assert cancelled["status"] == "cancelled" and cancelled["output"] == []


def test_a_continued_conversation_carries_the_earlier_turns() -> None:
    earlier = {"model": "m", "input": "hi", "instructions": "Be brief."}
    answer = responses.response_of(
        earlier, id="resp_1", status="completed", created_at=1, service_tier="default",
        chat=chat_answer("hello"),
    )  # fmt: skip
    body = responses.continued({"model": "m", "input": "again"}, earlier, answer)
    assert body["input"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ]
    assert "instructions" not in body  # not carried over, as in OpenAI's API


def test_batch_lines_cannot_continue_or_stream() -> None:
    assert responses.in_batch({"model": "m", "input": "x"}, 1) == []
    errors = responses.in_batch({"previous_response_id": "r", "stream": True}, 2)
    assert [e.param for e in errors] == ["body.previous_response_id", "body.stream"]


def test_tiers_by_name() -> None:
    tiers = default_tiers()
    assert tier_named(tiers, None).name == "default" and tier_named(tiers, None).realtime
    assert tier_named(tiers, "auto").name == "default"
    assert tier_named(tiers, "priority").realtime
    flex = tier_named(tiers, "flex")
    assert not flex.realtime and flex.window_seconds == 900
    with pytest.raises(InvalidRequest, match="flex") as refused:
        tier_named(tiers, "gold")
    assert refused.value.param == "service_tier"
    with pytest.raises(InvalidRequest):
        tier_named(tiers, 3)
