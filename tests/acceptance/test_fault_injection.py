"""Kill the server and separate workers with SIGKILL at random moments, during ingest,
run and finalize; restart them; check that every batch ends, every custom_id comes back
exactly once, and no request whose result was stored ever ran again.

Bounded: a fixed number of kills within a fixed time, with a seeded random generator.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from openai import OpenAI
from sqlalchemy import select

from slackwater.store.schema import requests
from slackwater.store.sql import SqlStore
from tests.acceptance.conftest import Process, start, start_server
from tests.acceptance.test_openai_client import results
from tests.acceptance.test_workers import chat_lines, fake_config, submit, write_jsonl
from tests.conftest import PG_URL, backend_params, free_port, reset_postgres

pytestmark = pytest.mark.slow
KILLS = 8
BATCHES = {"small-a": 400, "small-b": 400, "big": 20_000}


def stored_times(database_url: str) -> dict[str, float]:
    """custom_id -> when its result was stored (custom_ids are unique across batches here)."""

    async def read() -> dict[str, float]:
        store = SqlStore(database_url)
        try:
            async with store.engine.begin() as conn:
                rows = (
                    await conn.execute(
                        select(requests.c.custom_id, requests.c.finished_at).where(
                            requests.c.status.in_(["succeeded", "failed"])
                        )
                    )
                ).all()
        finally:
            await store.close()
        return {row.custom_id: row.finished_at.timestamp() for row in rows}

    return asyncio.run(read())


@pytest.mark.parametrize("backend", backend_params())
def test_sigkill_anywhere_loses_and_repeats_nothing(
    backend: str, tmp_path: Path, processes: list[Process]
) -> None:
    rng = random.Random(20261123)
    data = tmp_path / "data"
    database_url = f"sqlite:///{data / 'slackwater.db'}"
    if backend == "postgresql":
        asyncio.run(reset_postgres(PG_URL))
        database_url = PG_URL
    log = tmp_path / "calls.log"
    config = fake_config(tmp_path / "sw.toml", log, 15, database_url)
    # Short leases; chunks long enough (40 engine calls) that a worker always holds
    # finished results it has not flushed yet, which a kill destroys.
    text = config.read_text().replace("lease_seconds = 5", "lease_seconds = 2")
    config.write_text(text.replace("lease_size = 10", "lease_size = 200"))
    port = free_port()
    worker_args = ["worker", "--config", str(config), "--data-dir", str(data)]

    def serve() -> Process:
        proc = start_server(data, "--config", str(config), "--workers", "0", port=port)
        processes.append(proc)
        return proc

    def work(i: int) -> Process:
        proc = start(worker_args, tmp_path / f"worker{i}.log")
        processes.append(proc)
        return proc

    server = serve()
    workers = [work(0), work(1)]
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=5)
    batch_ids = {}
    for name, size in BATCHES.items():
        lines = chat_lines(size)
        for line in lines:
            line["custom_id"] = line["body"]["user"] = f"{name}-{line['custom_id']}"
        batch_ids[name] = submit(client, write_jsonl(tmp_path / f"{name}.jsonl", lines))
    # The big file is still being validated: the first kill lands in ingest.
    server.stop(signal.SIGKILL)
    server = serve()

    def progress(name: str) -> tuple[str, int]:
        batch = client.batches.retrieve(batch_ids[name])
        return batch.status, batch.request_counts.completed

    limit = time.monotonic() + 120
    while progress("big")[1] < 500:  # the run is under way: kill in the middle of it
        assert time.monotonic() < limit
        time.sleep(0.2)
    for kill in range(KILLS):
        time.sleep(rng.uniform(0.3, 1.5))
        victim = kill % 3 if kill < 3 else rng.randrange(3)  # each kind at least once
        if victim == 0:
            server.stop(signal.SIGKILL)
            server = serve()
        else:
            workers[victim - 1].stop(signal.SIGKILL)
            workers[victim - 1] = work(10 + kill)
    # The last results are coming in: kill the server around finalizing.
    while (state := progress("big"))[0] == "in_progress" and state[1] < BATCHES["big"] - 200:
        assert time.monotonic() < limit + 120
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    server = serve()

    deadline = time.monotonic() + 240
    final = {}
    for name, batch_id in batch_ids.items():
        while True:
            batch = client.batches.retrieve(batch_id)
            if batch.status in {"completed", "failed", "expired", "cancelled"}:
                final[name] = batch
                break
            assert time.monotonic() < deadline, f"{name} did not end: {batch}"
            time.sleep(0.5)

    for name, batch in final.items():
        assert batch.status == "completed", batch
        lines = results(client, batch.output_file_id) + results(client, batch.error_file_id)
        expected = Counter(f"{name}-r{i}" for i in range(BATCHES[name]))
        assert Counter(line["custom_id"] for line in lines) == expected, name

    stored = stored_times(database_url)
    runs: dict[str, list[float]] = defaultdict(list)
    for entry in log.read_text().splitlines():
        user, started = entry.split()
        runs[user].append(float(started))
    assert set(runs) == set(stored)
    # The kills landed mid-run: work in flight was lost and ran again (before being stored).
    assert any(len(times) > 1 for times in runs.values())
    late = {user: times for user, times in runs.items() if max(times) > stored[user] + 1e-3}
    assert not late, f"ran again after its result was stored: {list(late.items())[:5]}"
