"""Spot preemption with real processes: one spot worker is killed mid-chunk, another gets
its notice (SIGTERM); the on-demand worker, idle while spot runs, takes over. The batch
completes, nothing is lost or run twice, and the ledger charges each pool its own price.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from openai import OpenAI
from sqlalchemy import func, select

from slackwater.domain.clock import utcnow
from slackwater.store.schema import requests
from slackwater.store.sql import SqlStore
from tests.acceptance.conftest import Process, start, start_server
from tests.acceptance.test_fault_injection import stored_times
from tests.acceptance.test_openai_client import results
from tests.acceptance.test_workers import chat_lines, submit, write_jsonl

pytestmark = pytest.mark.slow
LINES = 1200
SPOT, ON_DEMAND = Decimal("0.9"), Decimal("3.0")


def config(path: Path, call_log: Path) -> Path:
    path.write_text(
        f"""lease_size = 10
lease_seconds = 3
poll_seconds = 0.05
restart_seconds = 1
# On-demand takes over as soon as spot is gone (a reserve longer than the window).
reserve_restarts = 1000000
drain_seconds = 5

[[pools]]
name = "spot"
kind = "spot"
price_per_hour = {SPOT}

[[pools]]
name = "on-demand"
kind = "on_demand"
price_per_hour = {ON_DEMAND}

[[models]]
name = "echo"
engine = "fake"
endpoints = ["/v1/chat/completions"]
max_batch_size = 5
options = {{ latency_ms = 100, call_log = "{call_log}" }}
"""
    )
    return path


async def live_workers(database_url: str, pool: str) -> int:
    store = SqlStore(database_url)
    try:
        return await store.live_workers(pool, utcnow() - timedelta(seconds=10))
    finally:
        await store.close()


def test_spot_preemption_loses_nothing_and_charges_each_pool(
    tmp_path: Path, processes: list[Process]
) -> None:
    data = tmp_path / "data"
    log = tmp_path / "calls.log"
    cfg = config(tmp_path / "sw.toml", log)
    server = start_server(data, "--config", str(cfg), "--workers", "0")
    processes.append(server)

    def worker(pool: str, name: str) -> Process:
        args = ["worker", "--config", str(cfg), "--data-dir", str(data), "--pool", pool]
        proc = start(args, tmp_path / f"{name}.log")
        processes.append(proc)
        return proc

    killed, noticed = worker("spot", "spot-a"), worker("spot", "spot-b")
    client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=5)
    batch_id = submit(client, write_jsonl(tmp_path / "in.jsonl", chat_lines(LINES)))

    def completed() -> int:
        return client.batches.retrieve(batch_id).request_counts.completed

    limit = time.monotonic() + 60
    while completed() < 50:
        assert time.monotonic() < limit
        time.sleep(0.05)
    # The on-demand worker joins while spot runs, and stays idle.
    worker("on-demand", "on-demand")
    database = f"sqlite:///{data / 'slackwater.db'}"
    while not asyncio.run(live_workers(database, "on-demand")):
        assert time.monotonic() < limit
        time.sleep(0.1)
    time.sleep(3)  # it has planned (every 2 s) more than once
    assert completed() < LINES * 3 // 4  # spot still has work left
    preempted_at = time.time()
    killed.stop(signal.SIGKILL)
    notice = time.monotonic()
    noticed.popen.send_signal(signal.SIGTERM)
    assert noticed.popen.wait(timeout=10) == 0  # drained its chunk and left cleanly
    assert time.monotonic() - notice < 5

    limit = time.monotonic() + 90
    while (batch := client.batches.retrieve(batch_id)).status != "completed":
        assert batch.status in {"validating", "in_progress", "finalizing"}, batch
        assert time.monotonic() < limit, batch
        time.sleep(0.2)
    lines = results(client, batch.output_file_id) + results(client, batch.error_file_id)
    assert Counter(line["custom_id"] for line in lines) == Counter(f"r{i}" for i in range(LINES))
    assert all(line["error"] is None for line in lines)

    # No request whose result was stored ran again.
    stored = stored_times(f"sqlite:///{data / 'slackwater.db'}")
    runs: dict[str, list[float]] = defaultdict(list)
    for entry in log.read_text().splitlines():
        user, started = entry.split()
        runs[user].append(float(started))
    assert set(runs) == set(stored)
    late = {u: t for u, t in runs.items() if max(t) > stored[u] + 1e-3}
    assert not late, list(late.items())[:5]

    # Each pool is charged its own price for the compute its workers spent.
    async def ledger() -> tuple[dict[str, tuple[int, Decimal, float]], float]:
        store = SqlStore(f"sqlite:///{data / 'slackwater.db'}")
        try:
            rows = await store.ledger("pool")
            async with store.engine.connect() as conn:
                first = (
                    await conn.execute(
                        select(func.min(requests.c.finished_at)).where(
                            requests.c.pool == "on-demand"
                        )
                    )
                ).scalar_one()
        finally:
            await store.close()
        pools = {r.key: (r.requests, r.cost, r.compute_seconds) for r in rows}
        return pools, first.timestamp()

    pools, first_on_demand = asyncio.run(ledger())
    assert set(pools) == {"spot", "on-demand"}
    assert sum(n for n, _, _ in pools.values()) == LINES
    for pool, price in (("spot", SPOT), ("on-demand", ON_DEMAND)):
        count, cost, seconds = pools[pool]
        assert count > 0
        assert abs(cost - price * Decimal(seconds) / 3600) < Decimal("1e-6"), pool
    # While the spot workers were alive, the on-demand worker stayed idle.
    assert first_on_demand > preempted_at
    assert batch.model_extra is not None
    total = Decimal(batch.model_extra["slackwater"]["cost"]["cost_usd"])
    assert total == sum(c for _, c, _ in pools.values())
