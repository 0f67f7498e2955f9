"""The http engine against flaky OpenAI-compatible servers on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from slackwater.config import ModelConfig
from slackwater.domain.batch import Endpoint
from slackwater.engines.http import HttpEngine
from tests.loopback import serve_in_thread

OK_BODY = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [1.0]}],
    "model": "upstream",
    "usage": {"prompt_tokens": 3, "total_tokens": 3},
}


def flaky_app(script: list[int], seen: list[dict[str, Any]], in_flight: list[int]) -> Starlette:
    async def embeddings(request: Request) -> JSONResponse:
        seen.append(await request.json())
        in_flight[0] += 1
        in_flight[1] = max(in_flight[1], in_flight[0])
        await asyncio.sleep(0.02)
        in_flight[0] -= 1
        status = script.pop(0) if script else 200
        if status == 200:
            return JSONResponse(OK_BODY)
        return JSONResponse(
            {"error": {"message": f"status {status}", "type": "x", "param": None, "code": None}},
            status_code=status,
            headers={"retry-after": "0"} if status == 429 else None,
        )

    return Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])


def engine(url: str, **options: Any) -> HttpEngine:
    model = ModelConfig(
        name="ours",
        engine="http",
        endpoints=[Endpoint.EMBEDDINGS],
        options={
            "base_url": url + "/v1",
            "upstream_model": "theirs",
            "backoff_seconds": 0.01,
            **options,
        },
    )
    return HttpEngine(model.to_model())


async def test_retries_429_and_5xx_then_succeeds() -> None:
    seen: list[dict[str, Any]] = []
    with serve_in_thread(flaky_app([429, 503, 200], seen, [0, 0])) as url:
        http = engine(url)
        [outcome] = await http.run(Endpoint.EMBEDDINGS, [{"model": "ours", "input": "x"}])
        await http.close()
    assert outcome.ok and outcome.body["model"] == "ours" and outcome.usage.prompt_tokens == 3
    assert len(seen) == 3 and seen[0]["model"] == "theirs"


async def test_asks_every_call_on_its_service_tier() -> None:
    seen: list[dict[str, Any]] = []
    with serve_in_thread(flaky_app([], seen, [0, 0])) as url:
        http = engine(url, service_tier="flex")
        [outcome] = await http.run(Endpoint.EMBEDDINGS, [{"model": "ours", "input": "x"}])
        await http.close()
    assert outcome.ok and seen[0]["service_tier"] == "flex"


async def test_client_errors_are_not_retried() -> None:
    seen: list[dict[str, Any]] = []
    with serve_in_thread(flaky_app([400], seen, [0, 0])) as url:
        http = engine(url)
        [outcome] = await http.run(Endpoint.EMBEDDINGS, [{"model": "ours", "input": "x"}])
        await http.close()
    assert outcome.status_code == 400 and not outcome.retryable and len(seen) == 1
    assert outcome.body["error"]["message"] == "status 400"


async def test_gives_up_after_max_retries_with_a_retryable_outcome() -> None:
    seen: list[dict[str, Any]] = []
    with serve_in_thread(flaky_app([500] * 10, seen, [0, 0])) as url:
        http = engine(url, max_retries=2)
        [outcome] = await http.run(Endpoint.EMBEDDINGS, [{"model": "ours", "input": "x"}])
        await http.close()
    assert outcome.status_code == 500 and outcome.retryable and len(seen) == 3


async def test_concurrency_is_bounded() -> None:
    in_flight = [0, 0]
    with serve_in_thread(flaky_app([], [], in_flight)) as url:
        http = engine(url, concurrency=3)
        outcomes = await http.run(Endpoint.EMBEDDINGS, [{"model": "ours", "input": "x"}] * 12)
        await http.close()
    assert all(o.ok for o in outcomes) and in_flight[1] == 3


async def test_unreachable_server_is_a_retryable_error() -> None:
    from tests.conftest import free_port

    http = engine(f"http://127.0.0.1:{free_port()}", max_retries=1)
    [outcome] = await http.run(Endpoint.EMBEDDINGS, [{"model": "ours", "input": "x"}])
    await http.close()
    assert outcome.status_code == 502 and outcome.retryable
