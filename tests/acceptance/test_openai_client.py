"""A real `slackwater serve` driven by the official `openai` package, with the default
models: the real MiniLM for embeddings and SmolLM2-135M-Instruct for chat."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from openai import NotFoundError, OpenAI

from tests.acceptance.conftest import start_server

pytestmark = pytest.mark.slow
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def wait(client: OpenAI, batch_id: str, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in TERMINAL:
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.3)


def results(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines()]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("acceptance")
    serve = start_server(
        root / "data", env={"SLACKWATER_MODEL_CACHE_DIR": str(root / "model-cache")}
    )
    yield serve
    serve.stop()


@pytest.fixture
def client(server: Any) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_embeddings_batch_with_the_real_minilm(client: OpenAI, tmp_path: Path) -> None:
    lines = [
        {
            "custom_id": f"doc-{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "all-MiniLM-L6-v2", "input": f"document number {i} about cats"},
        }
        for i in range(40)
    ]
    with write_jsonl(tmp_path / "in.jsonl", lines).open("rb") as handle:
        file = client.files.create(file=handle, purpose="batch")
    batch = client.batches.create(
        input_file_id=file.id,
        endpoint="/v1/embeddings",
        completion_window="24h",
        metadata={"job": "embed"},
    )
    assert batch.status == "validating" and batch.metadata == {"job": "embed"}
    done = wait(client, batch.id)
    assert done.status == "completed" and done.request_counts.completed == 40
    out = results(client, done.output_file_id)
    assert [o["custom_id"] for o in out] == [f"doc-{i}" for i in range(40)]
    for line in out:
        vector = line["response"]["body"]["data"][0]["embedding"]
        assert len(vector) == 384 and abs(sum(v * v for v in vector) - 1) < 1e-3
    realtime = client.embeddings.create(
        model="all-MiniLM-L6-v2", input="document number 0 about cats"
    )
    first = out[0]["response"]["body"]["data"][0]["embedding"]
    assert sum(a * b for a, b in zip(first, realtime.data[0].embedding, strict=True)) > 0.999


def test_chat_batch_with_the_default_small_model_gives_real_answers(
    client: OpenAI, tmp_path: Path
) -> None:
    questions = {
        "fr": ("What is the capital of France?", "Paris"),
        "jp": ("What is the capital of Japan?", "Tokyo"),
        "uk": ("What is the capital of the United Kingdom?", "London"),
    }
    lines = [
        {
            "custom_id": f"{key}-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "smollm2",
                "max_tokens": 16,
                "temperature": 0,
                "messages": [{"role": "user", "content": question}],
            },
        }
        for key, (question, _) in questions.items()
        for i in range(2)
    ]
    with write_jsonl(tmp_path / "chat.jsonl", lines).open("rb") as handle:
        file = client.files.create(file=handle, purpose="batch")
    done = wait(
        client,
        client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="1h"
        ).id,
    )
    assert done.status == "completed"
    out = {o["custom_id"]: o["response"]["body"] for o in results(client, done.output_file_id)}
    assert sorted(out) == sorted(line["custom_id"] for line in lines)  # each once
    answers = {key: out[f"{key}-0"]["choices"][0]["message"]["content"] for key in questions}
    right = [key for key, (_, city) in questions.items() if city in answers[key]]
    assert len(right) >= 2, answers  # a 135M model, quantised: mostly right
    for body in out.values():
        assert body["model"] == "smollm2" and body["usage"]["completion_tokens"] <= 16
    realtime = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": questions["fr"][0]}],
        max_tokens=16,
        temperature=0,
    )
    assert realtime.choices[0].message.content == answers["fr"]


def test_bad_file_fails_with_line_numbers_and_server_keeps_serving(
    client: OpenAI, tmp_path: Path
) -> None:
    good = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "all-MiniLM-L6-v2", "input": "x"},
    }
    lines = [
        good,
        "{oops",
        {**good, "custom_id": "b", "url": "/v1/chat/completions"},
        {**good, "custom_id": "c", "body": {"model": "gpt-5", "input": "x"}},
    ]
    with write_jsonl(tmp_path / "bad.jsonl", lines).open("rb") as handle:
        file = client.files.create(file=handle, purpose="batch")
    failed = wait(
        client,
        client.batches.create(
            input_file_id=file.id, endpoint="/v1/embeddings", completion_window="24h"
        ).id,
    )
    assert failed.status == "failed"
    assert [(e.line, e.param) for e in failed.errors.data] == [
        (2, None),
        (3, "url"),
        (4, "body.model"),
    ]
    with pytest.raises(NotFoundError):
        client.batches.retrieve("batch_missing")
    assert client.models.list().data[0].id == "all-MiniLM-L6-v2"
    assert client.batches.list(limit=100).data


def test_files_api_roundtrip(client: OpenAI, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "f.jsonl", [{"x": 1}])
    with path.open("rb") as handle:
        file = client.files.create(file=handle, purpose="batch")
    assert client.files.retrieve(file.id).bytes == path.stat().st_size
    assert file.id in [f.id for f in client.files.list()]
    assert client.files.content(file.id).content == path.read_bytes()
    assert client.files.delete(file.id).deleted


async def test_the_de_quantised_model_is_kept_and_answers_the_same(
    server: Any, client: OpenAI
) -> None:
    from slackwater.app import placed
    from slackwater.config import Settings
    from slackwater.engines.transformers import TransformersEngine

    cache = server.log.parent / "model-cache"
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Name a large ocean."}],
        "max_tokens": 12,
        "temperature": 0,
    }
    served = client.chat.completions.create(**body).choices[0].message.content
    [converted] = (cache / "converted").iterdir()  # made by the server's first load
    assert (converted / "config.json").is_file() and (converted / "model.safetensors").is_file()
    settings = Settings.load(data_dir=server.log.parent / "data", model_cache_dir=cache)
    model = next(m for m in settings.catalog() if m.name == "smollm2")
    engine = TransformersEngine(placed(model, settings))
    assert engine.source.where() == (converted, {})  # no GGUF this time
    [outcome] = await engine.run("/v1/chat/completions", [body])
    await engine.close()
    assert outcome.body["choices"][0]["message"]["content"] == served


def test_streamed_chat_assembles_to_the_whole_answer(client: OpenAI) -> None:
    question = [{"role": "user", "content": "Write a haiku about the sea."}]
    whole = client.chat.completions.create(
        model="smollm2", messages=question, max_tokens=40, temperature=0
    )
    pieces, finish, usage = [], None, None
    for chunk in client.chat.completions.create(
        model="smollm2",
        messages=question,
        max_tokens=40,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == whole.choices[0].message.content
    assert len([p for p in pieces if p]) > 2  # written as it grew, not at the end
    assert finish == whole.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens
