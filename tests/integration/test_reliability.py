"""Retries, out-of-memory splitting, deduplication, fairness, quotas, retry-what-failed,
idempotent creates and realtime priority, on the in-process server."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.integration.conftest import Server, chat_line, fake_models


def calls(path: Path) -> Counter[str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(line.split()[0] for line in lines)


async def test_retryable_failures_are_retried_then_reported(
    server_factory: Any, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    server: Server = await server_factory(
        engine_options={"failure_rate": 1.0, "failure_status": 503, "call_log": str(log)},
        max_attempts=3,
        retry_base_seconds=0.05,
    )
    done = await server.wait(
        (await server.submit([chat_line(i, user=f"u{i}") for i in range(4)]))["id"]
    )
    assert done["request_counts"] == {"total": 4, "completed": 0, "failed": 4}
    err = await server.lines(done["error_file_id"])
    assert {e["response"]["status_code"] for e in err} == {503}
    assert calls(log) == Counter({f"u{i}": 3 for i in range(4)})  # max_attempts each


async def test_client_errors_are_not_retried(server_factory: Any, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    server: Server = await server_factory(
        engine_options={"failure_rate": 1.0, "failure_status": 400, "call_log": str(log)},
        retry_base_seconds=0.05,
    )
    done = await server.wait((await server.submit([chat_line(0, user="u0")]))["id"])
    assert done["request_counts"]["failed"] == 1 and calls(log) == Counter({"u0": 1})


async def test_out_of_memory_batches_are_split(server_factory: Any, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    server: Server = await server_factory(engine_options={"fits": 1, "call_log": str(log)})
    done = await server.wait(
        (await server.submit([chat_line(i, user=f"u{i}") for i in range(8)]))["id"]
    )
    assert done["request_counts"] == {"total": 8, "completed": 8, "failed": 0}
    assert calls(log) == Counter({f"u{i}": 1 for i in range(8)})


async def test_identical_deterministic_requests_run_once(
    server_factory: Any, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    server: Server = await server_factory(engine_options={"call_log": str(log)})
    same = {"temperature": 0, "user": "same"}
    lines = [{**chat_line(i, **same), "body": {**chat_line(0, **same)["body"]}} for i in range(6)]
    done = await server.wait((await server.submit(lines))["id"])
    out = await server.lines(done["output_file_id"])
    assert (
        len(out) == 6
        and len({o["response"]["body"]["choices"][0]["message"]["content"] for o in out}) == 1
    )
    assert calls(log) == Counter({"same": 1})
    # Each reused answer is an answer of its own: its own id.
    assert len({o["response"]["body"]["id"] for o in out}) == 6
    # A later batch reuses the cached answer; a batch can opt out.
    again = await server.wait((await server.submit(lines[:2]))["id"])
    assert again["request_counts"]["completed"] == 2 and calls(log) == Counter({"same": 1})
    reused = await server.lines(again["output_file_id"])
    first = {o["response"]["body"]["id"] for o in out}
    assert not first & {o["response"]["body"]["id"] for o in reused}
    file_id = (await server.upload(lines[:2])).json()["id"]
    opted_out = (
        await server.client.post(
            "/v1/batches",
            json={
                "input_file_id": file_id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "1h",
                "metadata": {"cache": "off"},
            },
        )
    ).json()
    await server.wait(opted_out["id"])
    assert calls(log) == Counter({"same": 3})
    # Sampling with temperature > 0 is never deduplicated.
    sampled = [chat_line(i, temperature=1, user="hot") for i in range(3)]
    await server.wait((await server.submit(sampled))["id"])
    assert calls(log)["hot"] == 3


async def test_fifty_batches_from_five_keys_all_progress(server_factory: Any) -> None:
    from slackwater.runtime.worker import Worker

    # No worker while the batches arrive: a fair queue shares what is queued, so the
    # test starts the worker once all fifty are in.
    server: Server = await server_factory(
        run_worker_in_server=False, lease_size=4, models=fake_models(latency_ms=10)
    )
    keys = [(await server.services.keys.create(f"team-{k}"))[0] for k in range(5)]
    submitted: list[tuple[str, dict[str, str]]] = []
    # Each key submits its 10 batches back to back, as a naive client would.
    for key in keys:
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(10):
            batch = await server.submit([chat_line(i) for i in range(8)], headers=headers)
            submitted.append((batch["id"], headers))
    for batch_id, headers in submitted:
        await server.wait(batch_id, lambda b: b["status"] == "in_progress", headers=headers)
    svc = server.services
    worker = Worker(svc.store, svc.engines, svc.clock, lease_size=4, poll_seconds=0.02)
    running = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 60
    while True:
        # One consistent snapshot of the requests done per project (the ledger).
        done_by_key = {row.key: row.requests for row in await svc.store.ledger("project")}
        if sum(done_by_key.values()) >= 80:  # a fifth of all the work
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    worker.stop()
    await running
    # Every key has had a fair share: none starved behind the others' 40 batches.
    assert len(done_by_key) == 5 and min(done_by_key.values()) >= 8, done_by_key


async def test_quotas_answer_clearly(server_factory: Any) -> None:
    server: Server = await server_factory(
        engine_options={"latency_ms": 200},
        max_queued_requests_per_project=10,
        max_stored_bytes_per_project=3000,
    )
    await server.submit([chat_line(i) for i in range(8)])
    file_id = (await server.upload([chat_line(i) for i in range(5)])).json()["id"]
    refused = await server.client.post(
        "/v1/batches",
        json={
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "1h",
        },
    )
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert "quota of 10" in refused.json()["error"]["message"]
    too_much = await server.upload(b"x" * 2500)
    assert too_much.status_code == 400 and "quota" in too_much.json()["error"]["message"]


async def test_retry_endpoint_reruns_only_failed_lines(server_factory: Any) -> None:
    server: Server = await server_factory(
        engine_options={"failure_rate": 0.5, "failure_status": 400}
    )
    lines = [chat_line(i) for i in range(20)]
    first = await server.wait((await server.submit(lines))["id"])
    failed_ids = {e["custom_id"] for e in await server.lines(first["error_file_id"])}
    assert 0 < len(failed_ids) < 20
    retried = await server.client.post(f"/v1/batches/{first['id']}/retry")
    assert retried.status_code == 200
    second = await server.wait(retried.json()["id"])
    assert second["retried_from"] == first["id"]
    assert second["request_counts"]["total"] == len(failed_ids)
    content = await server.client.get(f"/v1/files/{second['input_file_id']}/content")
    assert {
        line.split('"custom_id": "')[1].split('"')[0] for line in content.text.splitlines()
    } == failed_ids
    # The fake engine fails by a hash of the body: the lines that passed pass again.
    passing = [line for line in lines if line["custom_id"] not in failed_ids]
    clean = await server.wait((await server.submit(passing))["id"])
    assert clean["request_counts"]["failed"] == 0
    nothing = await server.client.post(f"/v1/batches/{clean['id']}/retry")
    assert nothing.status_code == 409 and "no failed lines" in nothing.text
    missing = await server.client.post("/v1/batches/batch_nope/retry")
    assert missing.status_code == 404


async def test_idempotency_key(server: Server) -> None:
    file_id = (await server.upload([chat_line(0)])).json()["id"]
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "1h"}
    headers = {"Idempotency-Key": "create-once"}
    first = (await server.client.post("/v1/batches", json=body, headers=headers)).json()
    second = (await server.client.post("/v1/batches", json=body, headers=headers)).json()
    third = (await server.client.post("/v1/batches", json=body)).json()
    assert first["id"] == second["id"] != third["id"]
    assert len((await server.client.get("/v1/batches")).json()["data"]) == 2
    reused = await server.client.post(
        "/v1/batches", json={**body, "completion_window": "2h"}, headers=headers
    )
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert first["id"] in reused.json()["error"]["message"]


async def test_realtime_overtakes_batch_work(server_factory: Any, tmp_path: Path) -> None:
    # A local model on one device runs one call at a time; three workers in the server
    # share it, each with a step to hand it.
    log = tmp_path / "calls.log"
    server: Server = await server_factory(
        engine_options={"latency_ms": 100, "serial": True, "call_log": str(log)},
        lease_size=8,
        workers=3,
    )
    batch = await server.submit([chat_line(i, user=f"batch-{i}") for i in range(120)])
    await server.wait(batch["id"], lambda b: b["request_counts"]["completed"] >= 4)
    for call in range(3):
        sent = time.time()
        name = f"now-{call}"
        response = await server.client.post(
            "/v1/chat/completions",
            json={"model": "echo", "user": name, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 200
        calls = [row.split() for row in log.read_text().splitlines()]
        (ran,) = [float(started) for user, started in calls if user == name]
        # The batch step in flight when the call reached the engine set may finish; no
        # other starts before it. The call gets there a little after it was sent, so one
        # step may start in between; without the gate, the step every worker has queued
        # for the engine would go ahead of the call.
        batch_steps = {started for user, started in calls if user.startswith("batch-")}
        ahead = {started for started in batch_steps if sent < float(started) < ran}
        assert len(ahead) <= 1, (call, sorted(ahead))
    done = await server.wait(batch["id"])
    assert done["request_counts"]["completed"] == 120


async def test_prometheus_metrics(server_factory: Any) -> None:
    server: Server = await server_factory(
        engine_options={"failure_rate": 0.5, "failure_status": 503},
        max_attempts=2,
        retry_base_seconds=0.01,
    )
    await server.wait((await server.submit([chat_line(i) for i in range(20)]))["id"])
    text = (await server.client.get("/metrics")).text
    lines = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    success = lines['slackwater_requests_total{model="echo",outcome="success"}']
    errors = lines['slackwater_requests_total{model="echo",outcome="error"}']
    assert success + errors == 20 and errors > 0
    assert lines['slackwater_retries_total{model="echo"}'] == errors  # one retry each
    assert lines['slackwater_tokens_total{kind="prompt",model="echo"}'] > 0
    assert lines['slackwater_batch_duration_seconds_count{status="completed"}'] == 1
    assert "slackwater_lease_expiries_total" in lines
    await server.submit([chat_line(i) for i in range(3)])
    depth = (await server.client.get("/metrics")).text
    assert "slackwater_queue_depth" in depth


async def test_a_new_batch_wakes_the_monitor_and_a_settled_one_is_finalized_between_ticks(
    server: Server,
) -> None:
    monitor = server.services.monitor
    assert monitor is not None
    monitor.interval = 60.0  # no tick would come within this test
    await asyncio.sleep(0.1)  # the monitor is now in its long wait
    batch = await server.submit([chat_line(i) for i in range(20)])
    done = await server.wait(batch["id"], limit=10)
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 20, "completed": 20, "failed": 0}


async def test_stopping_the_monitor_stops_an_intake_in_flight(server: Server) -> None:
    monitor = server.services.monitor
    assert monitor is not None
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def endless_ingest(batch_id: str) -> Any:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    monitor.intake.ingest = endless_ingest  # type: ignore[method-assign]
    batch = await server.submit([chat_line(0)])
    await asyncio.wait_for(started.wait(), 5)
    await server.services.stop()
    assert cancelled.is_set()
    stored = await server.services.store.get_batch(None, batch["id"])
    assert stored.status.value == "validating"  # left for the next start to ingest
