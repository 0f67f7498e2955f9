"""A real `slackwater serve` driven by the official `openai` package, with the default
models: the real MiniLM for embeddings and a tiny local Llama for chat."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from openai import NotFoundError, OpenAI

from tests.acceptance.conftest import run_cli, start_server

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
    data = tmp_path_factory.mktemp("acceptance") / "data"
    built = run_cli("models", "make-tiny", "--data-dir", str(data))
    assert built.returncode == 0, built.stderr
    serve = start_server(data)
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


def test_chat_batch_with_the_tiny_local_llama(client: OpenAI, tmp_path: Path) -> None:
    lines = [
        {
            "custom_id": f"q{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "tiny-llama",
                "max_tokens": 8,
                "temperature": 0,
                "messages": [{"role": "user", "content": f"Tell me about {i}"}],
            },
        }
        for i in range(12)
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
    out = results(client, done.output_file_id)
    assert Counter(o["custom_id"] for o in out) == Counter(f"q{i}" for i in range(12))
    for line in out:
        body = line["response"]["body"]
        assert body["model"] == "tiny-llama" and body["usage"]["completion_tokens"] <= 8
        assert isinstance(body["choices"][0]["message"]["content"], str)
    realtime = client.chat.completions.create(
        model="tiny-llama",
        messages=[{"role": "user", "content": "Tell me about 3"}],
        max_tokens=8,
        temperature=0,
    )
    assert (
        realtime.choices[0].message.content
        == (out[3]["response"]["body"]["choices"][0]["message"]["content"])
    )


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
