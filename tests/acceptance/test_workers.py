"""Separate worker processes against one store (SQLite and PostgreSQL), cancellation in a
real server, and the engine call log proving no request ran twice."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from tests.acceptance.conftest import Process, start, start_server
from tests.acceptance.test_openai_client import results, wait, write_jsonl
from tests.conftest import PG_URL, backend_params, reset_postgres

pytestmark = pytest.mark.slow


def fake_config(path: Path, call_log: Path, latency_ms: int, database_url: str | None) -> Path:
    db = f'database_url = "{database_url}"\n' if database_url else ""
    path.write_text(
        f"""{db}lease_size = 10
lease_seconds = 5
poll_seconds = 0.05

[[models]]
name = "echo"
engine = "fake"
endpoints = ["/v1/chat/completions"]
max_batch_size = 5
options = {{ latency_ms = {latency_ms}, call_log = "{call_log}" }}
"""
    )
    return path


def chat_lines(n: int) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "echo",
                "user": f"r{i}",
                "messages": [{"role": "user", "content": f"m{i}"}],
            },
        }
        for i in range(n)
    ]


def submit(client: OpenAI, path: Path, window: str = "24h") -> str:
    with path.open("rb") as handle:
        file = client.files.create(file=handle, purpose="batch")
    return client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window=window
    ).id


@pytest.mark.parametrize("backend", backend_params())
async def test_separate_workers_share_the_queue_without_duplicates(
    backend: str, tmp_path: Path, processes: list[Process]
) -> None:
    database_url = None
    if backend == "postgresql":
        await reset_postgres(PG_URL)
        database_url = PG_URL
    log = tmp_path / "calls.log"
    config = fake_config(tmp_path / "sw.toml", log, 20, database_url)
    data = tmp_path / "data"
    server = start_server(data, "--config", str(config), "--workers", "0")
    processes.append(server)
    for i in range(3):
        processes.append(
            start(
                ["worker", "--config", str(config), "--data-dir", str(data)],
                tmp_path / f"worker{i}.log",
            )
        )
    client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    batch_ids = [
        submit(client, write_jsonl(tmp_path / f"in{b}.jsonl", chat_lines(150))) for b in range(2)
    ]
    for batch_id in batch_ids:
        done = wait(client, batch_id, timeout=240)
        assert done.status == "completed", done
        out = results(client, done.output_file_id)
        assert Counter(o["custom_id"] for o in out) == Counter(f"r{i}" for i in range(150))
    calls = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert len(calls) == 150 and set(calls.values()) == {2}  # each line of each of 2 batches
    worker_logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(3)]
    assert "Traceback" not in "".join(worker_logs)


def test_cancel_in_a_real_server_reaches_cancelled_with_partial_results(
    tmp_path: Path, processes: list[Process]
) -> None:
    log = tmp_path / "calls.log"
    config = fake_config(tmp_path / "sw.toml", log, 100, None)
    server = start_server(tmp_path / "data", "--config", str(config))
    processes.append(server)
    client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    batch_id = submit(client, write_jsonl(tmp_path / "in.jsonl", chat_lines(300)))
    while client.batches.retrieve(batch_id).request_counts.completed < 10:
        pass
    assert client.batches.cancel(batch_id).status == "cancelling"
    done = wait(client, batch_id, timeout=30)
    assert done.status == "cancelled"
    out, err = results(client, done.output_file_id), results(client, done.error_file_id)
    assert len(out) >= 10 and len(out) + len(err) == 300
    assert {e["error"]["code"] for e in err} == {"batch_cancelled"}
    assert Counter(x["custom_id"] for x in out + err) == Counter(f"r{i}" for i in range(300))
    ran = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert set(ran.values()) == {1} and len(ran) == len(out)


def test_killed_worker_loses_nothing(tmp_path: Path, processes: list[Process]) -> None:
    import signal
    import time

    log = tmp_path / "calls.log"
    config = fake_config(tmp_path / "sw.toml", log, 200, None)
    data = tmp_path / "data"
    server = start_server(data, "--config", str(config), "--workers", "0")
    processes.append(server)
    doomed = start(
        ["worker", "--config", str(config), "--data-dir", str(data)], tmp_path / "doomed.log"
    )
    client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    batch_id = submit(client, write_jsonl(tmp_path / "in.jsonl", chat_lines(60)))
    while client.batches.retrieve(batch_id).request_counts.completed < 5:
        time.sleep(0.05)
    doomed.stop(signal.SIGKILL)  # mid-chunk: its lease must run out and be reaped
    processes.append(
        start(
            ["worker", "--config", str(config), "--data-dir", str(data)], tmp_path / "rescuer.log"
        )
    )
    done = wait(client, batch_id, timeout=120)
    assert done.status == "completed" and done.request_counts.completed == 60
    out = results(client, done.output_file_id)
    assert Counter(o["custom_id"] for o in out) == Counter(f"r{i}" for i in range(60))


def test_a_worker_runs_several_chunks_at_once(tmp_path: Path, processes: list[Process]) -> None:
    log = tmp_path / "calls.log"
    config = fake_config(tmp_path / "sw.toml", log, 300, None)  # 5-line chunks of 300 ms
    data = tmp_path / "data"
    server = start_server(data, "--config", str(config), "--workers", "0")
    processes.append(server)
    processes.append(
        start(
            ["worker", "--chunks", "2", "--config", str(config), "--data-dir", str(data)],
            tmp_path / "worker.log",
        )
    )
    client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    done = wait(client, submit(client, write_jsonl(tmp_path / "in.jsonl", chat_lines(40))), 120)
    assert done.status == "completed" and done.request_counts.completed == 40
    starts = sorted({float(line.split()[1]) for line in log.read_text().splitlines()})
    # Two engine calls ran side by side: one began while the other's 300 ms went on.
    assert any(b - a < 0.15 for a, b in itertools.pairwise(starts))
    ran = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert set(ran.values()) == {1} and len(ran) == 40
