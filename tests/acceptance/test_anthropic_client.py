"""A real `slackwater serve` driven by the official `anthropic` package: Messages, streamed
or not, and Message Batches, on the default small chat model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.acceptance.conftest import Serve, start_server

pytestmark = pytest.mark.slow
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    serve = start_server(tmp_path_factory.mktemp("anthropic") / "data")
    yield serve
    serve.stop()


@pytest.fixture
def client(server: Serve) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)


def test_a_message_streamed_or_not(client: anthropic.Anthropic) -> None:
    # This SDK no longer takes `temperature`; the API still does (greedy: the same words).
    greedy: Any = {"temperature": 0}
    message = client.messages.create(
        model="smollm2", max_tokens=16, system="Be brief.", messages=FRANCE, extra_body=greedy
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "smollm2" and "Paris" in message.content[0].text
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 16
    haiku = [{"role": "user", "content": "Write a haiku about the sea."}]
    whole = client.messages.create(
        model="smollm2", max_tokens=40, messages=haiku, extra_body=greedy
    )
    with client.messages.stream(
        model="smollm2", max_tokens=40, messages=haiku, extra_body=greedy
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == final.content[0].text == whole.content[0].text
    assert len([p for p in pieces if p]) > 1  # sent as it was written
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_errors_come_in_anthropics_shape(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="nope", max_tokens=8, messages=FRANCE)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="smollm2", max_tokens=0, messages=FRANCE)
    assert "max_tokens" in str(bad.value)


def wait(client: anthropic.Anthropic, batch_id: str) -> Any:
    deadline = time.monotonic() + 300
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.3)


def test_a_message_batch_created_polled_and_read(client: anthropic.Anthropic) -> None:
    questions = {
        "fr": "What is the capital of France?",
        "jp": "What is the capital of Japan?",
        "uk": "What is the capital of the United Kingdom?",
    }
    created = client.messages.batches.create(
        requests=[
            {
                "custom_id": key,
                "params": {
                    "model": "smollm2",
                    "max_tokens": 16,
                    "temperature": 0,
                    "messages": [{"role": "user", "content": question}],
                },
            }
            for key, question in questions.items()
        ]
    )
    assert created.type == "message_batch" and created.id.startswith("msgbatch_")
    assert created.processing_status == "in_progress"
    ended = wait(client, created.id)
    assert ended.request_counts.succeeded == 3 and ended.request_counts.errored == 0
    results = list(client.messages.batches.results(created.id))
    assert sorted(r.custom_id for r in results) == sorted(questions)  # each once
    answers = {r.custom_id: r.result.message.content[0].text for r in results}  # type: ignore[union-attr]
    assert (
        sum(
            city in answers[key]
            for key, city in (("fr", "Paris"), ("jp", "Tokyo"), ("uk", "London"))
        )
        >= 2
    )
    assert created.id in [b.id for b in client.messages.batches.list()]
    deleted = client.messages.batches.delete(created.id)
    assert deleted.id == created.id
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(created.id)


def test_a_bad_request_in_a_batch_is_named_and_a_batch_can_be_cancelled(
    client: anthropic.Anthropic, tmp_path: Path
) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.batches.create(
            requests=[{"custom_id": "a", "params": {"model": "smollm2", "messages": FRANCE}}]
        )
    assert "requests.0.params.max_tokens" in str(bad.value)
    many = client.messages.batches.create(
        requests=[
            {
                "custom_id": f"r{i}",
                "params": {
                    "model": "smollm2",
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": f"Count to {i}"}],
                },
            }
            for i in range(40)
        ]
    )
    client.messages.batches.cancel(many.id)
    ended = wait(client, many.id)
    counts = ended.request_counts
    assert counts.canceled > 0 and counts.succeeded + counts.canceled + counts.errored == 40
    kinds = {r.result.type for r in client.messages.batches.results(many.id)}
    assert "canceled" in kinds
