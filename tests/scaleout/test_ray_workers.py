"""Workers whose engines run as Ray actors: a batch spread over two actors, an actor
killed mid-call, and a request that kills every actor it runs on, each line recorded
once and the ledger charging each once."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from slackwater.config import ModelConfig
from tests.integration.conftest import Server, chat_line

pytestmark = pytest.mark.ray


def actors_model(calls: Path, **options: Any) -> ModelConfig:
    return ModelConfig(
        name="echo",
        engine="fake",
        endpoints=["/v1/chat/completions"],
        max_batch_size=4,
        options={"latency_ms": 300, "call_log": str(calls), **options},
        ray={"num_cpus": 0.5, "min_actors": 1, "max_actors": 2, "idle_seconds": 30},
    )


def lines(n: int) -> list[dict[str, Any]]:
    return [chat_line(i, user=f"req-{i}") for i in range(n)]


async def finish(server: Server, n: int) -> dict[str, Any]:
    done = await server.wait((await server.submit(lines(n)))["id"], limit=120)
    assert done["status"] == "completed", done
    return done


async def output_ids(server: Server, done: dict[str, Any]) -> list[str]:
    return sorted(o["custom_id"] for o in await server.lines(done["output_file_id"]))


def runs(calls: Path) -> list[tuple[str, float]]:
    return [
        (name, float(at))
        for name, at in (line.split() for line in calls.read_text().split("\n") if line)
    ]


async def test_a_batch_runs_across_two_actors_each_line_once(
    ray_cluster: Any, server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    calls = tmp_path / "calls.log"
    server: Server = await server_factory(
        models=[actors_model(calls)], workers=2, ray=True, lease_size=8
    )
    done = await finish(server, 40)
    assert done["request_counts"] == {"total": 40, "completed": 40, "failed": 0}
    assert await output_ids(server, done) == sorted(f"req-{i}" for i in range(40))
    ran = runs(calls)
    assert sorted(name for name, _ in ran) == sorted(f"req-{i}" for i in range(40))
    engine = await server.services.engines.engine("echo")
    pids = {ray_cluster.get(actor.pid.remote()) for actor in engine.live}
    assert len(pids) == 2  # the pool grew to its two actors, in two processes
    # Calls overlapped: two started within one call's time of each other.
    starts = sorted({at for _, at in ran})
    assert any(b - a < 0.25 for a, b in itertools.pairwise(starts))
    [row] = await server.services.store.ledger("batch")
    assert row.requests == 40


async def test_an_actor_killed_mid_call_loses_and_repeats_nothing(
    ray_cluster: Any, server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    calls = tmp_path / "calls.log"
    server: Server = await server_factory(
        models=[actors_model(calls)], workers=2, ray=True, lease_size=8
    )
    batch = await server.submit(lines(40))
    engine = await server.services.engines.engine("echo")
    for _ in range(200):  # a call is in flight on an actor
        if calls.exists() or engine.started_actors:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.15)
    ray_cluster.kill(engine.live[0])
    done = await server.wait(batch["id"], limit=120)
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": 40, "completed": 40, "failed": 0}
    assert await output_ids(server, done) == sorted(f"req-{i}" for i in range(40))
    assert engine.lost_actors >= 1
    # What the dead actor was running had not finished: no request ran to its end twice.
    names = [name for name, _ in runs(calls)]
    assert sorted(names) == sorted(f"req-{i}" for i in range(40))
    [row] = await server.services.store.ledger("batch")
    assert row.requests == 40


async def test_a_request_that_kills_its_actor_fails_alone(
    ray_cluster: Any, server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    calls = tmp_path / "calls.log"
    model = actors_model(calls, crash_on="req-5", latency_ms=20)
    server: Server = await server_factory(models=[model], workers=2, ray=True, lease_size=8)
    done = await finish(server, 12)
    assert done["request_counts"] == {"total": 12, "completed": 11, "failed": 1}
    [error] = await server.lines(done["error_file_id"])
    assert error["custom_id"] == "req-5"
    assert error["response"]["body"]["error"]["code"] == "engine_died"
    others = sorted(f"req-{i}" for i in range(12) if i != 5)
    assert await output_ids(server, done) == others
    assert sorted(name for name, _ in runs(calls)) == others


async def test_a_pools_actors_ask_for_its_nodes_resources(
    ray_cluster: Any, server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    from decimal import Decimal

    from slackwater.config import PoolConfig

    box = PoolConfig(name="spot-nodes", kind="local", price_per_hour=Decimal("0.5"),
                     ray_resources={"spot": 1})  # fmt: skip
    calls = tmp_path / "calls.log"
    server: Server = await server_factory(
        models=[actors_model(calls, latency_ms=20)], pools=[box], workers=2, ray=True
    )
    await finish(server, 8)
    engine = await server.services.engines.engine("echo")
    assert engine.live  # its actors hold a spot unit each, on the nodes that have them
    assert ray_cluster.available_resources().get("spot", 0) <= 4 - len(engine.live)
    [row] = await server.services.store.ledger("pool")
    assert (row.key, row.requests) == ("spot-nodes", 8)
