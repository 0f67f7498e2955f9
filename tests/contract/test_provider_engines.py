"""The provider batch engines against fake OpenAI and Anthropic batch servers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from slackwater.domain.batch import Endpoint
from slackwater.domain.errors import EngineError
from slackwater.domain.model import Model
from slackwater.engines.anthropic_batch import AnthropicBatchEngine
from slackwater.engines.openai_batch import OpenAIBatchEngine
from tests.fakes.providers import anthropic_app, openai_app
from tests.loopback import serve_in_thread

CHAT = Endpoint.CHAT.value


def model(engine: str, url: str, **options: Any) -> Model:
    return Model(
        name=f"our-{engine}",
        engine=engine,
        endpoints=frozenset({Endpoint.CHAT}),
        options={"base_url": url, "api_key": "test-key", "poll_seconds": 0.01, **options},
    )


def bodies(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"model": "m", "messages": [{"role": "user", "content": f"question {i}"}], **extra}
        for i in range(n)
    ]


@pytest.fixture
def openai_server() -> Iterator[tuple[str, Any]]:
    app = openai_app()
    with serve_in_thread(app) as url:
        yield url + "/v1", app


@pytest.fixture
def anthropic_server() -> Iterator[tuple[str, Any]]:
    app = anthropic_app()
    with serve_in_thread(app) as url:
        yield url, app


async def test_openai_batch_round_trip(openai_server: tuple[str, Any]) -> None:
    url, app = openai_server
    engine = OpenAIBatchEngine(model("openai_batch", url, upstream_model="gpt-4o-mini"))
    try:
        outcomes = await engine.run(CHAT, bodies(5))
    finally:
        await engine.close()
    assert [o.status_code for o in outcomes] == [200] * 5
    answers = [o.body["choices"][0]["message"]["content"] for o in outcomes]
    assert answers == [f"batched: question {i}" for i in range(5)]  # in input order
    assert all(o.body["model"] == "our-openai_batch" for o in outcomes)
    assert outcomes[0].usage.prompt_tokens == 2 and outcomes[0].usage.completion_tokens == 3
    [batch] = app.state.data["batches"].values()
    assert batch["metadata"]["slackwater_key"]
    assert sorted(app.state.behaviour.calls) == [str(i) for i in range(5)]


async def test_openai_batch_expiry_returns_partial_results(openai_server: tuple[str, Any]) -> None:
    url, app = openai_server
    app.state.behaviour.expire_after = 2
    app.state.behaviour.reject_model = "bad"
    engine = OpenAIBatchEngine(model("openai_batch", url))
    try:
        outcomes = await engine.run(CHAT, [*bodies(1, model="bad"), *bodies(3)])
    finally:
        await engine.close()
    assert outcomes[0].status_code == 400 and not outcomes[0].retryable
    assert outcomes[0].body["error"]["code"] == "model_not_found"
    assert outcomes[1].ok
    # Past the provider's expiry: retryable, queued again by slackwater.
    assert [(o.status_code, o.retryable) for o in outcomes[2:]] == [(503, True)] * 2
    assert outcomes[2].body["error"]["code"] == "batch_expired"


async def test_openai_batch_picks_up_a_batch_a_dead_worker_left(
    openai_server: tuple[str, Any],
) -> None:
    url, app = openai_server
    app.state.behaviour.polls_to_finish = 4
    slow = OpenAIBatchEngine(model("openai_batch", url, poll_seconds=30))
    started = asyncio.create_task(slow.run(CHAT, bodies(3)))
    for _ in range(1000):  # until the provider has the batch
        if app.state.data["batches"]:
            break
        await asyncio.sleep(0.01)
    started.cancel()  # the worker died while the provider batch ran
    await slow.close()
    engine = OpenAIBatchEngine(model("openai_batch", url))
    try:
        outcomes = await engine.run(CHAT, bodies(3))
    finally:
        await engine.close()
    assert all(o.ok for o in outcomes)
    assert len(app.state.data["batches"]) == 1  # not submitted (nor paid for) twice
    assert sorted(app.state.behaviour.calls) == ["0", "1", "2"]


async def test_openai_batch_bad_key_is_not_retried(openai_server: tuple[str, Any]) -> None:
    url, _ = openai_server
    engine = OpenAIBatchEngine(model("openai_batch", url, api_key="wrong"))
    try:
        with pytest.raises(EngineError, match="HTTP 401") as error:
            await engine.run(CHAT, bodies(1))
    finally:
        await engine.close()
    assert not error.value.retryable


async def test_anthropic_batch_round_trip(anthropic_server: tuple[str, Any]) -> None:
    url, app = anthropic_server
    engine = AnthropicBatchEngine(model("anthropic_batch", url, upstream_model="claude-haiku"))
    chat = [
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "what is batching"},
            ],
            "max_tokens": 2,
        },
        *bodies(2),
    ]
    try:
        outcomes = await engine.run(CHAT, chat)
    finally:
        await engine.close()
    first = outcomes[0].body
    assert first["object"] == "chat.completion" and first["model"] == "our-anthropic_batch"
    assert first["choices"][0]["message"]["content"] == "batched: what"
    assert first["choices"][0]["finish_reason"] == "length"  # max_tokens reached
    assert first["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    assert outcomes[1].body["choices"][0]["finish_reason"] == "stop"
    assert outcomes[2].body["choices"][0]["message"]["content"] == "batched: question 1"
    assert sorted(app.state.behaviour.calls) == ["0", "1", "2"]


def test_anthropic_params_translate_the_chat_body() -> None:
    engine = AnthropicBatchEngine(
        model("anthropic_batch", "http://127.0.0.1:9", upstream_model="c")
    )
    params = engine.params(
        {
            "model": "ours",
            "messages": [
                {"role": "system", "content": "rules"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            ],
            "temperature": 0,
            "stop": "END",
        }
    )
    assert params == {
        "model": "c",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
        "system": "rules",
        "temperature": 0,
        "stop_sequences": ["END"],
    }


async def test_anthropic_errored_and_expired_results(anthropic_server: tuple[str, Any]) -> None:
    url, app = anthropic_server
    app.state.behaviour.reject_model = "bad"
    app.state.behaviour.expire_after = 2
    engine = AnthropicBatchEngine(model("anthropic_batch", url))
    try:
        outcomes = await engine.run(CHAT, [*bodies(1, model="bad"), *bodies(2)])
    finally:
        await engine.close()
    assert (outcomes[0].status_code, outcomes[0].retryable) == (400, False)
    assert outcomes[1].ok
    assert (outcomes[2].status_code, outcomes[2].retryable) == (503, True)
    assert outcomes[2].body["error"]["code"] == "provider_batch_expired"


async def test_anthropic_rejects_other_endpoints(anthropic_server: tuple[str, Any]) -> None:
    url, _ = anthropic_server
    engine = AnthropicBatchEngine(model("anthropic_batch", url))
    try:
        with pytest.raises(EngineError, match="chat completions only"):
            await engine.run(Endpoint.EMBEDDINGS.value, [{"input": "x"}])
    finally:
        await engine.close()
