"""`slackwater worker --ray ADDRESS` in processes of its own, joining the test's Ray: one
SIGKILLed mid-batch loses nothing (its leases run out and another worker takes them),
and every line is recorded once."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from tests.acceptance.conftest import Process, start, start_server
from tests.acceptance.test_openai_client import results, wait, write_jsonl
from tests.acceptance.test_workers import chat_lines, submit

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def config(path: Path, calls: Path) -> Path:
    path.write_text(
        f"""lease_size = 8
lease_seconds = 4
poll_seconds = 0.05

[[models]]
name = "echo"
engine = "fake"
endpoints = ["/v1/chat/completions"]
max_batch_size = 4
options = {{ latency_ms = 200, call_log = "{calls}" }}
ray = {{ num_cpus = 0.25, min_actors = 1, max_actors = 2 }}
"""
    )
    return path


def test_a_killed_ray_worker_loses_and_repeats_nothing(
    ray_cluster: Any, tmp_path: Path, processes: list[Process]
) -> None:
    address = ray_cluster.get_runtime_context().gcs_address
    calls = tmp_path / "calls.log"
    settings = config(tmp_path / "sw.toml", calls)
    data = tmp_path / "data"
    server = start_server(data, "--config", str(settings), "--workers", "0")
    processes.append(server)
    worker = ["worker", "--ray", address, "--config", str(settings), "--data-dir", str(data)]
    doomed = start(worker, tmp_path / "doomed.log")
    client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    batch_id = submit(client, write_jsonl(tmp_path / "in.jsonl", chat_lines(80)))
    deadline = time.monotonic() + 120
    while client.batches.retrieve(batch_id).request_counts.completed < 8:
        assert time.monotonic() < deadline, (tmp_path / "doomed.log").read_text()
        time.sleep(0.05)
    # Its engines are actors on the cluster: they hold a share of its CPUs.
    assert ray_cluster.available_resources().get("CPU", 0) <= 2 - 0.25
    doomed.stop(signal.SIGKILL)  # mid-chunk, its actors with it
    processes.append(start(worker, tmp_path / "rescuer.log"))
    done = wait(client, batch_id, timeout=180)
    assert done.status == "completed" and done.request_counts.completed == 80, done
    out = results(client, done.output_file_id)
    assert Counter(o["custom_id"] for o in out) == Counter(f"r{i}" for i in range(80))
    # A request the killed worker ran but did not record may run again (at least once
    # between engine and store); one recorded is never run again.
    ran = Counter(line.split()[0] for line in calls.read_text().splitlines())
    assert set(ran) == {f"r{i}" for i in range(80)}
    assert "Traceback" not in (tmp_path / "rescuer.log").read_text()
