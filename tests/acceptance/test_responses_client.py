"""The official `openai` package's Responses API against a real `slackwater serve` with
the default chat model (SmolLM2): in the call, in the background through a SIGKILL,
cancelled, on the flex tier, as batch lines and through autobatcher; and its webhooks,
created and verified with the same package."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from openai import BadRequestError, InvalidWebhookSignatureError, OpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.acceptance.conftest import start_server
from tests.loopback import serve_in_thread

pytestmark = pytest.mark.slow
MODEL = "SmolLM2-135M-Instruct"


def client_for(url: str) -> OpenAI:
    return OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


async def autobatched(url: str, prompts: list[str]) -> list[str]:
    from autobatcher import BatchOpenAI

    client = BatchOpenAI(api_key="unused", base_url=url + "/v1", poll_interval_seconds=0.2)
    try:
        answers = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=12
                )
                for prompt in prompts
            )
        )
    finally:
        await client.close()
    return [answer.choices[0].message.content or "" for answer in answers]


def settled(client: OpenAI, response_id: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        response = client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress"):
            return response
        assert time.monotonic() < deadline, response
        time.sleep(0.2)


def test_responses_with_the_openai_client(tmp_path: Path) -> None:
    deliveries: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: Request) -> Response:
        deliveries.append((await request.body(), dict(request.headers)))
        return Response(status_code=200)

    with serve_in_thread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as hook_url:
        check_responses(tmp_path, hook_url + "/hook", deliveries)


def check_responses(
    tmp_path: Path, hook_url: str, deliveries: list[tuple[bytes, dict[str, str]]]
) -> None:
    data = tmp_path / "data"
    env = {
        "SLACKWATER_MODEL_CACHE_DIR": str(tmp_path / "model-cache"),
        "SLACKWATER_WEBHOOK_ALLOW_HTTP": "true",  # the receiver is on loopback
    }
    # First a server that runs no worker: background work waits in the queue.
    idle = start_server(data, env={**env, "SLACKWATER_RUN_WORKER_IN_SERVER": "false"})
    client = client_for(idle.url)
    endpoint = client.webhooks.create(
        name="when done",
        url=hook_url,
        event_types=["response.completed", "response.incomplete", "batch.completed"],
    )
    assert endpoint.signing_secret.startswith("whsec_")
    queued = client.responses.create(
        model=MODEL,
        input="Name three colours.",
        background=True,
        max_output_tokens=24,
        metadata={"job": "colours"},
    )
    assert queued.status == "queued" and queued.background is True
    dropped = client.responses.create(model=MODEL, input="Never mind.", background=True)
    cancelled = client.responses.cancel(dropped.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(BadRequestError) as refused:
        client.responses.create(model=MODEL, input="x", background=True, store=False)
    assert refused.value.body["param"] == "store"  # type: ignore[index]
    idle.stop(signal.SIGKILL)  # the queued response is only in the store now

    serve = start_server(data, env=env)
    try:
        client = client_for(serve.url)
        done = settled(client, queued.id)
        assert done.status in ("completed", "incomplete"), done
        assert done.output_text.strip() and done.metadata == {"job": "colours"}
        assert done.id == queued.id and done.usage is not None and done.usage.output_tokens > 0
        assert client.responses.retrieve(dropped.id).status == "cancelled"

        now = client.responses.create(
            model=MODEL,
            instructions="Answer in one word.",
            input="What colour is the sky?",
            max_output_tokens=16,
            temperature=0,
        )
        assert now.status in ("completed", "incomplete") and now.output_text.strip()
        assert now.service_tier == "default"
        follow = client.responses.create(
            model=MODEL, input="And grass?", previous_response_id=now.id, max_output_tokens=16
        )
        assert follow.previous_response_id == now.id and follow.output_text.strip()
        flex = client.responses.create(
            model=MODEL, input="Say hi.", service_tier="flex", max_output_tokens=16
        )
        assert flex.service_tier == "flex" and flex.output_text.strip()
        chat = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hi."}],
            max_tokens=8,
            service_tier="flex",
        )
        assert chat.service_tier == "flex" and chat.choices[0].message.content

        lines = "".join(
            json.dumps(
                {
                    "custom_id": f"q{i}",
                    "method": "POST",
                    "url": "/v1/responses",
                    "body": {
                        "model": MODEL,
                        "input": f"Count to {i + 2}.",
                        "max_output_tokens": 16,
                    },
                }
            )
            + "\n"
            for i in range(3)
        )
        file = client.files.create(file=("in.jsonl", io.BytesIO(lines.encode())), purpose="batch")
        batch = client.batches.create(
            input_file_id=file.id, endpoint="/v1/responses", completion_window="24h"
        )
        deadline = time.monotonic() + 180
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            assert time.monotonic() < deadline, batch
            time.sleep(0.3)
            batch = client.batches.retrieve(batch.id)
        assert batch.status == "completed" and batch.request_counts.completed == 3
        assert batch.output_file_id is not None
        out = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
        assert [o["custom_id"] for o in out] == ["q0", "q1", "q2"]
        for line in out:
            body = line["response"]["body"]
            assert body["object"] == "response" and body["output"][0]["content"][0]["text"]

        # autobatcher in its default (flex) mode: background responses, polled.
        answers = asyncio.run(autobatched(serve.url, [f"Say the number {i}." for i in range(6)]))
        assert len(answers) == 6 and all(answer.strip() for answer in answers)

        # The background response's event and the batch's, each verified by the SDK.
        deadline = time.monotonic() + 30
        while len(deliveries) < 2:
            assert time.monotonic() < deadline, deliveries
            time.sleep(0.1)
        events = {}
        for body, headers in deliveries:
            event = client.webhooks.unwrap(body, headers, secret=endpoint.signing_secret)
            events[event.data.id] = event.type
            with pytest.raises(InvalidWebhookSignatureError):
                client.webhooks.unwrap(body + b" ", headers, secret=endpoint.signing_secret)
        assert events[queued.id] in ("response.completed", "response.incomplete")
        assert events[batch.id] == "batch.completed"
    finally:
        serve.stop()
