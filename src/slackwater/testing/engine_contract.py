"""The Engine contract: what every engine, built in or third-party, must do.

slackwater runs it on every installed engine (tests/contract/test_engines.py). An
engine package runs it on its own engine by subclassing `EngineContract` in a test
module and providing an `engines` fixture (pytest and pytest-asyncio needed):

    import pytest
    from slackwater.testing import EngineContract, Engines

    class TestMyEngine(EngineContract):
        @pytest.fixture
        async def engines(self):
            chat = MyEngine(Model(name="c", engine="mine", endpoints=frozenset(CHAT)))
            await chat.start()
            yield Engines(chat=chat, embed=None)  # None: the engine has no such model
            await chat.close()

A chat engine is asked for greedy answers (temperature 0) of at most 6 tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from slackwater.domain.batch import Endpoint
from slackwater.domain.request import Outcome
from slackwater.ports import Engine


@dataclass
class Engines:
    """The engine under test on a chat model, an embedding model and a prediction model
    with rows it takes (None: it has no such model). The chat model may also serve
    /v1/completions."""

    chat: Engine | None
    embed: Engine | None
    predict: Engine | None = None
    rows: list[list[float]] | None = None  # rows of features the prediction model takes


def chat_body(engine: Engine, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": engine.model.name,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 6,
        "temperature": 0,
        **extra,
    }


def _served(engine: Engine | None, endpoint: Endpoint) -> Engine:
    if engine is None or not engine.model.serves(endpoint):
        pytest.skip(f"the engine has no model serving {endpoint.value}")
    return engine


def _check_usage(outcome: Outcome) -> None:
    assert outcome.usage.prompt_tokens > 0, outcome.body
    assert outcome.body["usage"]["total_tokens"] == outcome.usage.total_tokens


class EngineContract:
    """Test methods every engine must pass; subclasses provide `engines`."""

    @pytest.mark.asyncio
    async def test_declares_whether_it_runs_calls_one_at_a_time(self, engines: Engines) -> None:
        for engine in (engines.chat, engines.embed, engines.predict):
            if engine is not None:
                assert isinstance(engine.serial, bool)

    @pytest.mark.asyncio
    async def test_an_empty_call_has_no_outcomes(self, engines: Engines) -> None:
        engine = engines.chat or engines.embed or engines.predict
        assert engine is not None, "provide at least one of chat, embed and predict"
        endpoint = (
            Endpoint.CHAT
            if engine is engines.chat
            else Endpoint.EMBEDDINGS
            if engine is engines.embed
            else Endpoint.PREDICTIONS
        )
        assert await engine.run(endpoint.value, []) == []

    @pytest.mark.asyncio
    async def test_chat_one_outcome_per_body(self, engines: Engines) -> None:
        chat = _served(engines.chat, Endpoint.CHAT)
        bodies = [chat_body(chat, f"question number {i}") for i in range(6)]
        outcomes = await chat.run(Endpoint.CHAT.value, bodies)
        assert len(outcomes) == 6
        for outcome in outcomes:
            assert outcome.ok, outcome.body
            body = outcome.body
            assert body["object"] == "chat.completion" and body["model"] == chat.model.name
            choice = body["choices"][0]
            assert isinstance(choice["message"]["content"], str)
            assert choice["finish_reason"] in {"stop", "length"}
            assert outcome.usage.completion_tokens <= 6
            _check_usage(outcome)

    @pytest.mark.asyncio
    async def test_greedy_answers_do_not_depend_on_the_batch(self, engines: Engines) -> None:
        chat = _served(engines.chat, Endpoint.CHAT)
        alone = await chat.run(Endpoint.CHAT.value, [chat_body(chat, "the same prompt")])
        padding = "a much longer prompt that pads the others " * 3
        mixed = await chat.run(
            Endpoint.CHAT.value, [chat_body(chat, padding), chat_body(chat, "the same prompt")]
        )
        first, second = alone[0].body, mixed[1].body
        assert first["choices"][0]["message"] == second["choices"][0]["message"]

    @pytest.mark.asyncio
    async def test_an_answer_in_steps_is_the_answer_in_one_call(self, engines: Engines) -> None:
        """Engines that run requests in steps (ports.SteppingEngine) give the same answer,
        and let others in between steps."""
        chat = _served(engines.chat, Endpoint.CHAT)
        stepping = getattr(chat, "run_in_steps", None)
        if stepping is None:
            pytest.skip("the engine does not run requests in steps")
        body = chat_body(chat, "a question that takes a while", max_tokens=40)
        [whole] = await chat.run(Endpoint.CHAT.value, [body])
        so_far: list[str] = []

        async def between(text: str) -> None:
            so_far.append(text)

        stepped = await stepping(Endpoint.CHAT.value, body, between)
        assert stepped.body["choices"] == whole.body["choices"]
        assert stepped.usage == whole.usage
        if whole.usage.completion_tokens > 20:
            assert so_far  # a long answer is not written in one go
        answer = whole.body["choices"][0]["message"]["content"]
        for earlier, later in zip(so_far, [*so_far[1:], answer], strict=True):
            assert later.startswith(earlier)  # the text so far only grows

    @pytest.mark.asyncio
    async def test_completions(self, engines: Engines) -> None:
        chat = _served(engines.chat, Endpoint.COMPLETIONS)
        body = {"model": chat.model.name, "prompt": "Once upon", "max_tokens": 4, "temperature": 0}
        [outcome] = await chat.run(Endpoint.COMPLETIONS.value, [body])
        assert outcome.ok and outcome.body["object"] == "text_completion", outcome.body
        assert isinstance(outcome.body["choices"][0]["text"], str)
        _check_usage(outcome)

    @pytest.mark.asyncio
    async def test_embeddings_one_unit_vector_per_input(self, engines: Engines) -> None:
        embed = _served(engines.embed, Endpoint.EMBEDDINGS)
        bodies: list[dict[str, Any]] = [
            {"model": embed.model.name, "input": "a single sentence"},
            {"model": embed.model.name, "input": ["two", "inputs here"]},
        ]
        outcomes = await embed.run(Endpoint.EMBEDDINGS.value, bodies)
        assert [len(o.body["data"]) for o in outcomes] == [1, 2]
        assert len({len(d["embedding"]) for o in outcomes for d in o.body["data"]}) == 1
        for outcome in outcomes:
            assert outcome.ok and outcome.body["object"] == "list"
            data = outcome.body["data"]
            assert [d["index"] for d in data] == list(range(len(data)))
            for item in data:
                assert math.isclose(math.fsum(v * v for v in item["embedding"]), 1.0, rel_tol=1e-3)
            _check_usage(outcome)

    @pytest.mark.asyncio
    async def test_predictions_one_per_row_and_a_bad_body_fails_alone(
        self, engines: Engines
    ) -> None:
        predict = _served(engines.predict, Endpoint.PREDICTIONS)
        rows = engines.rows
        assert rows, "a prediction model comes with rows it takes"
        name = predict.model.name
        width = len(rows[0])
        bodies: list[dict[str, Any]] = [
            {"model": name, "inputs": rows[:3]},
            {"model": name, "inputs": [rows[0], rows[1][:-1]]},  # a feature short
            {"model": name, "inputs": [rows[0], [*rows[1][:-1], "high"]]},  # not a number
            {"model": name, "inputs": rows[3:4]},
        ]
        outcomes = await predict.run(Endpoint.PREDICTIONS.value, bodies)
        assert len(outcomes) == 4
        first, short, word, last = outcomes
        assert first.ok and first.body["object"] == "predictions", first.body
        assert len(first.body["predictions"]) == 3 and first.usage.prompt_tokens == 3
        assert last.ok and len(last.body["predictions"]) == 1
        assert short.status_code == 400 and short.body["error"]["param"] == "inputs[1]"
        assert f"the model takes {width}" in short.body["error"]["message"]
        assert word.status_code == 400 and word.body["error"]["param"] == "inputs[1]"
        assert "not a number" in word.body["error"]["message"]
        # The same rows alone or among others: the same predictions.
        [alone] = await predict.run(
            Endpoint.PREDICTIONS.value, [{"model": name, "inputs": rows[:3]}]
        )
        assert alone.body["predictions"] == first.body["predictions"]
