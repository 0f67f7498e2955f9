"""One batch split across OpenAI's Batch API, Anthropic's Message Batches (both fake
servers on loopback) and the local machine: complete, each line once, each with its cost
in its pool's ledger."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from slackwater.config import ModelConfig, PoolConfig, PriceConfig
from tests.fakes.providers import anthropic_app, openai_app
from tests.integration.conftest import Server, chat_line, fake_models
from tests.loopback import serve_in_thread

OPENAI_BATCH = PriceConfig(input=Decimal("0.075"), output=Decimal("0.30"))
ANTHROPIC_BATCH = PriceConfig(input=Decimal("0.40"), output=Decimal("2.00"))


@pytest.fixture
def providers() -> Iterator[tuple[str, str, Any, Any]]:
    openai, anthropic = openai_app(), anthropic_app()
    with serve_in_thread(openai) as openai_url, serve_in_thread(anthropic) as anthropic_url:
        yield openai_url + "/v1", anthropic_url, openai, anthropic


async def test_a_batch_split_across_provider_and_local_pools(
    server_factory: Any, providers: tuple[str, str, Any, Any]
) -> None:
    openai_url, anthropic_url, openai, anthropic = providers
    common = {"api_key": "test-key", "poll_seconds": 0.02}
    models = [
        *fake_models(),
        ModelConfig(
            name="gpt-4o-mini",
            engine="openai_batch",
            endpoints=["/v1/chat/completions"],
            max_batch_size=50,
            options={"base_url": openai_url, **common},
            price=PriceConfig(input=Decimal("0.15"), output=Decimal("0.60")),
            batch_price=OPENAI_BATCH,
        ),
        ModelConfig(
            name="claude-haiku",
            engine="anthropic_batch",
            endpoints=["/v1/chat/completions"],
            max_batch_size=50,
            options={"base_url": anthropic_url, **common},
            price=PriceConfig(input=Decimal("0.80"), output=Decimal("4.00")),
            batch_price=ANTHROPIC_BATCH,
        ),
    ]
    pools = [
        PoolConfig(name="local", kind="local", price_per_hour=Decimal("0.36")),
        PoolConfig(name="openai", kind="provider_batch", models=["gpt-4o-mini"]),
        PoolConfig(name="anthropic", kind="provider_batch", models=["claude-haiku"]),
    ]
    server: Server = await server_factory(models=models, pools=pools, lease_size=50)
    names = ["echo", "gpt-4o-mini", "claude-haiku"]
    lines = [chat_line(i, model=names[i % 3]) for i in range(30)]
    batch = await server.wait((await server.submit(lines))["id"], limit=60)
    assert batch["status"] == "completed", batch
    out = await server.lines(batch["output_file_id"])
    assert Counter(o["custom_id"] for o in out) == Counter(f"req-{i}" for i in range(30))
    assert await server.lines(batch["error_file_id"]) == []
    by_model = {o["response"]["body"]["model"] for o in out}
    assert by_model == set(names)
    # Each provider ran its ten requests once.
    assert len(openai.state.behaviour.calls) == 10 and len(anthropic.state.behaviour.calls) == 10

    ledger = {row.key: row for row in await server.services.store.ledger("pool")}
    assert {k: r.requests for k, r in ledger.items()} == {
        "local": 10,
        "openai": 10,
        "anthropic": 10,
    }
    for pool, model, price in (
        ("openai", "gpt-4o-mini", OPENAI_BATCH),
        ("anthropic", "claude-haiku", ANTHROPIC_BATCH),
    ):
        usage = [
            o["response"]["body"]["usage"] for o in out if o["response"]["body"]["model"] == model
        ]
        tokens_in = sum(u["prompt_tokens"] for u in usage)
        tokens_out = sum(u["completion_tokens"] for u in usage)
        assert (
            ledger[pool].cost == (price.input * tokens_in + price.output * tokens_out) / 1_000_000
        )
    local = ledger["local"]  # 0.36 $/hour is 0.0001 $/second of engine time
    assert abs(local.cost - Decimal("0.0001") * Decimal(local.compute_seconds)) < Decimal("1e-8")
    total = sum((r.cost for r in ledger.values()), Decimal(0))
    assert Decimal(batch["slackwater"]["cost"]["cost_usd"]) == total
