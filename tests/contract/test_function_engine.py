"""A new engine added in a test file: a function registered under a name passes the
Engine contract with no change anywhere else."""

from __future__ import annotations

import hashlib
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from slackwater.config import ModelConfig
from slackwater.domain.batch import Endpoint
from slackwater.domain.errors import EngineError
from slackwater.domain.request import Outcome, Usage
from slackwater.engines import create_engine, register_engine, responses
from slackwater.engines.function import FunctionEngine
from slackwater.testing import EngineContract, Engines


def _vector(text: str) -> list[float]:
    raw = [b - 127.5 for b in hashlib.sha256(text.encode()).digest()[:8]]
    norm = math.sqrt(sum(v * v for v in raw))
    return [v / norm for v in raw]


def shout(endpoint: str, bodies: list[dict[str, Any]]) -> list[Outcome]:
    """Upper-cases the prompt; embeds by hashing."""
    outcomes = []
    for body in bodies:
        if endpoint == Endpoint.EMBEDDINGS:
            inputs = responses.inputs_of(body)
            vectors = [_vector(str(item)) for item in inputs]
            outcomes.append(responses.embeddings("shout", vectors, len(inputs), None))
            continue
        text = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
        words = text.upper().split()[: body.get("max_tokens") or 16]
        usage = Usage(len(text.split()), len(words))
        make = responses.chat_completion if endpoint == Endpoint.CHAT else responses.completion
        outcomes.append(make(body["model"], " ".join(words), "stop", usage))
    return outcomes


register_engine("shout", lambda model: FunctionEngine(model, shout))


def shout_model(name: str, endpoints: list[Endpoint]) -> Any:
    return ModelConfig(name=name, engine="shout", endpoints=endpoints).to_model()


class TestShoutEngine(EngineContract):
    @pytest.fixture
    async def engines(self) -> AsyncIterator[Engines]:
        yield Engines(
            chat=create_engine(shout_model("c", [Endpoint.CHAT, Endpoint.COMPLETIONS])),
            embed=create_engine(shout_model("e", [Endpoint.EMBEDDINGS])),
        )


async def test_a_handler_that_miscounts_fails_the_call() -> None:
    engine = FunctionEngine(shout_model("c", [Endpoint.CHAT]), lambda endpoint, bodies: [])
    with pytest.raises(EngineError, match="returned 0 outcomes for 1 requests"):
        await engine.run(Endpoint.CHAT, [{"model": "c", "messages": []}])


async def test_an_async_handler_works_too() -> None:
    async def handler(endpoint: str, bodies: list[dict[str, Any]]) -> list[Outcome]:
        return [Outcome(200, {"n": i}) for i, _ in enumerate(bodies)]

    engine = FunctionEngine(shout_model("c", [Endpoint.CHAT]), handler)
    assert [o.body for o in await engine.run(Endpoint.CHAT, [{}, {}])] == [{"n": 0}, {"n": 1}]
