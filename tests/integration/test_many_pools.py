"""One batch across two spot pools and a provider's batch tier: the first spot pool goes
mid-batch and its work moves to the second; as the deadline nears with no spot left, the
planner hands the rest to the provider (a fake OpenAI Batch API on loopback) rather than
start on-demand (or, in the second test, to an endpoint's flex tier). Every line once;
the ledger charges each pool its own price."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from slackwater.app import build
from slackwater.config import ModelConfig, PoolConfig, PriceConfig, Settings
from slackwater.runtime.services import Services
from tests.fakes.providers import openai_app
from tests.integration.conftest import Server, chat_line
from tests.loopback import serve_in_thread

LINES = 60


@pytest.fixture
def provider() -> Iterator[tuple[str, Any]]:
    app = openai_app()
    with serve_in_thread(app) as url:
        yield url + "/v1", app


def local_echo(calls: Path, venue: str) -> ModelConfig:
    """The model run here (a fake engine logging each request it runs), with its venue."""
    return ModelConfig(
        name="echo",
        engine="fake",
        endpoints=["/v1/chat/completions"],
        max_batch_size=4,
        options={"latency_ms": 400, "call_log": str(calls)},
        batch_venue=venue,
    )


def shared(tmp_path: Path, models: list[ModelConfig], pools: list[PoolConfig]) -> dict[str, Any]:
    """Settings the server and every worker share."""
    return {
        "data_dir": tmp_path / "data",
        "models": models,
        "pools": pools,
        "lease_size": 4,
        "lease_seconds": 10,
        "restart_seconds": 60,
        "reserve_restarts": 2,
    }


async def worker_on(server: Server, common: dict[str, Any], pool: str) -> Services:
    """A worker process's services on `pool`, deciding afresh at every lease."""
    settings = Settings.load(pool=pool, poll_seconds=0.02, **common)
    services = build(settings, clock=server.clock, monitor=False, workers=1)
    placement = services.workers[0].placement
    assert placement is not None
    placement.refresh_seconds = placement.measure_seconds = 0
    await services.start()
    return services


async def settled(server: Server, pool: str, at_least: int) -> None:
    for _ in range(3000):
        rows = {r.key: r.requests for r in await server.services.store.ledger("pool")}
        if rows.get(pool, 0) >= at_least:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"pool {pool} did not run {at_least} requests: {rows}")


async def test_spot_fails_over_then_the_provider_takes_the_rest_near_the_deadline(
    server_factory: Any, provider: tuple[str, Any], tmp_path: Path
) -> None:
    url, fake = provider
    calls = tmp_path / "calls.log"
    models = [
        local_echo(calls, venue="echo-at-provider"),
        # The same model at a provider: dearer than spot, cheaper than on-demand.
        ModelConfig(
            name="echo-at-provider",
            engine="openai_batch",
            endpoints=["/v1/chat/completions"],
            max_batch_size=100,
            options={"base_url": url, "api_key": "test-key", "poll_seconds": 0.02},
            batch_price=PriceConfig(input=Decimal(150), output=Decimal(150)),
        ),
    ]
    pools = [
        PoolConfig(name="spot-a", kind="spot", price_per_hour=Decimal("0.9")),
        PoolConfig(name="spot-b", kind="spot", price_per_hour=Decimal("1.0")),
        PoolConfig(name="on-demand", kind="on_demand", price_per_hour=Decimal("3")),
        PoolConfig(
            name="provider",
            kind="provider_batch",
            models=["echo-at-provider"],
            turnaround_seconds=100,
        ),
    ]
    common = shared(tmp_path, models, pools)
    server: Server = await server_factory(run_worker_in_server=False, **common)

    batch = await server.submit([chat_line(i, user=f"r{i}") for i in range(LINES)])
    await server.wait(batch["id"], lambda b: b["status"] == "in_progress")
    spot_a, spot_b, on_demand = [
        await worker_on(server, common, p) for p in ("spot-a", "spot-b", "on-demand")
    ]
    try:
        await settled(server, "spot-a", 8)
        await spot_a.stop()  # the first spot pool is gone
        ran_in_a = {r.key: r.requests for r in await server.services.store.ledger("pool")}
        await settled(server, "spot-b", ran_in_a.get("spot-b", 0) + 8)
        await spot_b.stop()  # then the second: no spot left anywhere
        # The deadline nears: 200 s left, less slack than the reserve (2 restarts of 60
        # s) over the work and a restart; the provider's 100 s still fit.
        done = await server.services.store.get_batch(None, batch["id"])
        server.clock.offset += done.expires_at - server.clock() - timedelta(seconds=200)
        finished = await server.wait(batch["id"], limit=60)
    finally:
        for services in (spot_a, spot_b, on_demand):
            await services.stop()
    assert finished["status"] == "completed", finished

    out = await server.lines(finished["output_file_id"])
    assert Counter(o["custom_id"] for o in out) == Counter(f"req-{i}" for i in range(LINES))
    ledger = {row.key: row for row in await server.services.store.ledger("pool")}
    assert set(ledger) == {"spot-a", "spot-b", "provider"}, ledger  # never on-demand
    assert sum(row.requests for row in ledger.values()) == LINES
    # Each line ran once: here (the fake engine's log) or at the provider.
    here = Counter(line.split()[0] for line in calls.read_text().splitlines())
    at_provider = len(fake.state.behaviour.calls)
    assert set(here.values()) == {1} and len(here) + at_provider == LINES
    assert ledger["provider"].requests == at_provider > 0
    for pool, price in (("spot-a", Decimal("0.9")), ("spot-b", Decimal("1.0"))):
        row = ledger[pool]
        assert abs(row.cost - price * Decimal(row.compute_seconds) / 3600) < Decimal("1e-6")
    tokens = ledger["provider"].prompt_tokens + ledger["provider"].completion_tokens
    assert ledger["provider"].cost == Decimal(150) * tokens / 1_000_000


def flex_app(seen: list[dict[str, Any]]) -> Starlette:
    """An OpenAI-compatible chat endpoint that records what it is asked."""

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append(body)
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(seen)}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "done"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
            }
        )

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


async def test_near_the_deadline_the_rest_goes_to_an_endpoints_flex_tier(
    server_factory: Any, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    calls = tmp_path / "calls.log"
    with serve_in_thread(flex_app(seen)) as url:
        models = [
            local_echo(calls, venue="echo-flex"),
            # The same model behind an endpoint, asked on its flex tier: half its price.
            ModelConfig(
                name="echo-flex",
                engine="http",
                endpoints=["/v1/chat/completions"],
                options={"base_url": url + "/v1", "service_tier": "flex", "upstream_model": "m"},
                price=PriceConfig(input=Decimal(300), output=Decimal(300)),
                tier_prices={"flex": PriceConfig(input=Decimal(150), output=Decimal(150))},
            ),
        ]
        pools = [
            PoolConfig(name="spot-a", kind="spot", price_per_hour=Decimal("0.9")),
            PoolConfig(name="on-demand", kind="on_demand", price_per_hour=Decimal("3")),
            PoolConfig(
                name="endpoint",
                kind="provider_realtime",
                models=["echo-flex"],
                turnaround_seconds=60,
            ),
        ]
        common = shared(tmp_path, models, pools)
        server: Server = await server_factory(run_worker_in_server=False, **common)

        batch = await server.submit([chat_line(i, user=f"r{i}") for i in range(LINES)])
        await server.wait(batch["id"], lambda b: b["status"] == "in_progress")
        spot, on_demand = [await worker_on(server, common, p) for p in ("spot-a", "on-demand")]
        try:
            await settled(server, "spot-a", 8)
            await spot.stop()  # no spot left
            done = await server.services.store.get_batch(None, batch["id"])
            server.clock.offset += done.expires_at - server.clock() - timedelta(seconds=200)
            finished = await server.wait(batch["id"], limit=60)
        finally:
            for services in (spot, on_demand):
                await services.stop()
    assert finished["status"] == "completed", finished

    out = await server.lines(finished["output_file_id"])
    assert Counter(o["custom_id"] for o in out) == Counter(f"req-{i}" for i in range(LINES))
    ledger = {row.key: row for row in await server.services.store.ledger("pool")}
    assert set(ledger) == {"spot-a", "endpoint"}, ledger  # never on-demand
    here = Counter(line.split()[0] for line in calls.read_text().splitlines())
    assert set(here.values()) == {1} and len(here) + len(seen) == LINES
    # Asked on the flex tier, for the upstream's model name, and billed at flex prices.
    assert seen and {(b["service_tier"], b["model"]) for b in seen} == {("flex", "m")}
    assert ledger["endpoint"].requests == len(seen)
    assert ledger["endpoint"].cost == Decimal(150) * 6 * len(seen) / 1_000_000
