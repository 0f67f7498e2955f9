"""The ledger: every request's pool, tokens, compute time and cost, against real time."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from slackwater.cli import app
from slackwater.config import ModelConfig, PoolConfig, PriceConfig
from tests.integration.conftest import Server, chat_line, fake_models

PRICE = PriceConfig(input=Decimal("1.5"), output=Decimal("6"))  # realtime, $ per M tokens


def priced_models(**options: Any) -> list[ModelConfig]:
    echo, vec = fake_models(**options)
    return [echo.model_copy(update={"price": PRICE}), vec]


async def test_loading_a_model_is_not_charged_to_the_requests(server_factory: Any) -> None:
    server: Server = await server_factory(
        models=priced_models(start_ms=1000, latency_ms=10),
        pools=[PoolConfig(name="box", kind="local", price_per_hour=Decimal("7.2"))],
        pool="box",
    )
    await server.wait((await server.submit([chat_line(i) for i in range(3)]))["id"])
    [row] = await server.services.store.ledger("pool")
    assert row.requests == 3 and 0 < row.compute_seconds < 0.5  # the 1 s load is not in it


async def test_each_request_is_charged_to_its_pool_against_realtime(
    server_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server: Server = await server_factory(
        data_dir=data,
        models=priced_models(latency_ms=30),
        pools=[PoolConfig(name="box", kind="local", price_per_hour=Decimal("7.2"))],
        pool="box",
    )
    same = {"temperature": 0, "user": "same"}
    lines = [chat_line(i) for i in range(8)] + [
        {**chat_line(100 + i), "body": chat_line(0, **same)["body"]} for i in range(2)
    ]
    batch = await server.wait((await server.submit(lines))["id"])
    out = await server.lines(batch["output_file_id"])
    usage = [o["response"]["body"]["usage"] for o in out]
    realtime = sum(
        (PRICE.input * u["prompt_tokens"] + PRICE.output * u["completion_tokens"]) / 1_000_000
        for u in usage
    )
    cost = batch["slackwater"]["cost"]
    assert Decimal(cost["realtime_cost_usd"]) == realtime
    rows = await server.services.store.ledger("pool")
    [row] = rows
    assert row.key == "box" and row.requests == 10
    # 7.2 $/h is 0.002 $/s: the cost is the compute time the engine calls took.
    assert Decimal(cost["cost_usd"]) == row.cost
    assert abs(row.cost - Decimal("0.002") * Decimal(row.compute_seconds)) < Decimal("1e-8")
    assert row.compute_seconds >= 8 * 0.03 / 4  # 30 ms per engine call of up to 4
    assert Decimal(cost["saving_usd"]) == realtime - row.cost
    [by_engine] = await server.services.store.ledger("engine")
    assert by_engine.key == "fake" and by_engine.requests == 10

    # The CLI report reads the same ledger, with deadline outcomes.
    args = ["report", "--data-dir", str(data), "--by", "model", "--json"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["rows"][0]["model"] == "echo"
    assert report["total"]["requests"] == 10
    assert Decimal(report["total"]["cost_usd"]) == row.cost
    assert report["deadlines"] == {"met": 1, "missed": 0, "cancelled": 0, "failed": 0, "open": 0}

    # One line per request: model, engine, pool, tokens, engine time, the rate and cost.
    args = ["report", "--data-dir", str(data), "--batch", batch["id"], "--limit", "3", "--json"]
    listed = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.output)["requests"]
    assert [e["custom_id"] for e in entries] == ["req-0", "req-1", "req-2"]
    first = entries[0]
    assert (first["model"], first["engine"], first["pool"]) == ("echo", "fake", "box")
    assert first["price"] == "$7.2/hour" and first["compute_seconds"] > 0
    assert Decimal(first["cost_usd"]) > 0


async def test_a_reused_result_costs_nothing_but_counts_its_realtime_price(
    server_factory: Any,
) -> None:
    server: Server = await server_factory(models=priced_models())
    line = chat_line(0, temperature=0, user="same")
    first = await server.wait((await server.submit([line]))["id"])
    again = await server.wait((await server.submit([line]))["id"])
    assert Decimal(again["slackwater"]["cost"]["cost_usd"]) == 0
    assert (
        again["slackwater"]["cost"]["realtime_cost_usd"]
        == (first["slackwater"]["cost"]["realtime_cost_usd"])
    )
    assert Decimal(first["slackwater"]["cost"]["realtime_cost_usd"]) > 0


async def test_engine_calls_side_by_side_are_charged_the_engines_time_once(
    server_factory: Any, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    server: Server = await server_factory(
        models=priced_models(latency_ms=200, call_log=str(log)),
        pools=[PoolConfig(name="box", kind="local", price_per_hour=Decimal("7.2"))],
        pool="box",
    )
    await server.wait((await server.submit([chat_line(i) for i in range(16)]))["id"])
    # One lease, four engine calls of four: the worker keeps two in flight on an engine
    # that batches side by side, so the next begins while the last one runs.
    starts = sorted({float(line.split()[1]) for line in log.read_text().splitlines()})
    assert len(starts) == 4 and starts[1] - starts[0] < 0.1
    # The engine was busy for about 2 x 200 ms, and that is what the requests are charged
    # (each call its share of the time it shared), not the calls' 4 x 200 ms.
    [row] = await server.services.store.ledger("pool")
    assert row.requests == 16 and 0.35 < row.compute_seconds < 0.6, row.compute_seconds
