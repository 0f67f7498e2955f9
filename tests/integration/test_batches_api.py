"""The Batch API end to end in one process: lifecycle, live counts, cancel, expiry, errors."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from tests.integration.conftest import Server, chat_line

TERMINAL = {"completed", "failed", "expired", "cancelled"}


async def test_batch_runs_to_completion_in_input_order(server: Server) -> None:
    lines = [chat_line(i) for i in range(30)]
    batch = await server.submit(lines)
    assert batch["status"] == "validating" and batch["object"] == "batch"
    done = await server.wait(batch["id"])
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 30, "completed": 30, "failed": 0}
    for stamp in ("created_at", "in_progress_at", "finalizing_at", "completed_at", "expires_at"):
        assert isinstance(done[stamp], int)
    assert done["expires_at"] - done["created_at"] == 24 * 3600
    out = await server.lines(done["output_file_id"])
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(30)]
    first = out[0]
    assert first["error"] is None and first["response"]["status_code"] == 200
    assert first["response"]["body"]["choices"][0]["message"]["content"] == "echo: hello 0"
    assert first["id"].startswith("batch_req_") and first["response"]["request_id"]
    assert done["error_file_id"] is None
    file = (await server.client.get(f"/v1/files/{done['output_file_id']}")).json()
    assert file["purpose"] == "batch_output" and file["bytes"] > 0


async def test_engine_errors_go_to_the_error_file(server_factory: Any) -> None:
    server: Server = await server_factory(
        engine_options={"failure_rate": 0.5, "failure_status": 400}
    )
    done = await server.wait((await server.submit([chat_line(i) for i in range(40)]))["id"])
    counts = done["request_counts"]
    assert done["status"] == "completed" and 0 < counts["failed"] < 40
    out, err = await server.lines(done["output_file_id"]), await server.lines(done["error_file_id"])
    assert len(out) == counts["completed"] and len(err) == counts["failed"]
    assert sorted(x["custom_id"] for x in out + err) == sorted(f"req-{i}" for i in range(40))
    assert err[0]["response"]["status_code"] == 400
    assert err[0]["response"]["body"]["error"]["message"]


async def test_request_counts_move_while_the_batch_runs(server_factory: Any) -> None:
    server: Server = await server_factory(engine_options={"latency_ms": 40}, lease_size=8)
    batch = await server.submit([chat_line(i) for i in range(40)])
    seen = await server.wait(batch["id"], lambda b: 0 < b["request_counts"]["completed"] < 40)
    assert seen["status"] == "in_progress"
    assert (await server.wait(batch["id"]))["status"] == "completed"


async def test_cancel_midway_keeps_finished_results(server_factory: Any) -> None:
    server: Server = await server_factory(engine_options={"latency_ms": 50}, lease_size=4)
    batch = await server.submit([chat_line(i) for i in range(60)])
    await server.wait(batch["id"], lambda b: b["request_counts"]["completed"] >= 8)
    cancelling = (await server.client.post(f"/v1/batches/{batch['id']}/cancel")).json()
    assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"]
    done = await server.wait(batch["id"])
    assert done["status"] == "cancelled" and done["cancelled_at"]
    out, err = await server.lines(done["output_file_id"]), await server.lines(done["error_file_id"])
    assert len(out) == done["request_counts"]["completed"] >= 8
    assert len(out) + len(err) == 60
    assert Counter(x["custom_id"] for x in out + err) == Counter(f"req-{i}" for i in range(60))
    assert {e["error"]["code"] for e in err} == {"batch_cancelled"}
    counts = done["request_counts"]  # cancelled lines count, as failed: the sums add up
    assert (counts["total"], counts["completed"], counts["failed"]) == (60, len(out), len(err))
    again = await server.client.post(f"/v1/batches/{batch['id']}/cancel")
    assert again.json()["status"] == "cancelled"


async def test_expired_batch_keeps_finished_results(server_factory: Any) -> None:
    server: Server = await server_factory(engine_options={"latency_ms": 50}, lease_size=4)
    batch = await server.submit([chat_line(i) for i in range(60)], window="1m")
    await server.wait(batch["id"], lambda b: b["request_counts"]["completed"] >= 4)
    server.clock.offset = timedelta(minutes=2)
    done = await server.wait(batch["id"])
    assert done["status"] == "expired" and done["expired_at"]
    out, err = await server.lines(done["output_file_id"]), await server.lines(done["error_file_id"])
    assert len(out) >= 4 and len(out) + len(err) == 60
    assert {e["error"]["code"] for e in err} == {"batch_expired"}
    counts = done["request_counts"]
    assert (counts["total"], counts["completed"], counts["failed"]) == (60, len(out), len(err))


async def test_bad_lines_fail_the_batch_and_the_server_keeps_serving(server: Server) -> None:
    lines: list[Any] = [chat_line(0), "{broken", chat_line(2, model="nope"), chat_line(0)]
    batch = await server.submit(lines)
    failed = await server.wait(batch["id"])
    assert failed["status"] == "failed" and failed["failed_at"]
    errors = failed["errors"]["data"]
    assert [(e["line"], e["code"]) for e in errors] == [
        (2, "invalid_json_line"),
        (3, "model_not_found"),
        (4, "duplicate_custom_id"),
    ]
    assert errors[1]["param"] == "body.model"
    good = await server.wait((await server.submit([chat_line(1)]))["id"])
    assert good["status"] == "completed"


async def test_empty_file_fails_with_a_reason(server: Server) -> None:
    failed = await server.wait((await server.submit(["", " "]))["id"])
    assert failed["status"] == "failed"
    assert failed["errors"]["data"][0]["code"] == "empty_file"


async def test_embeddings_batch(server: Server) -> None:
    lines = [
        {
            "custom_id": f"e{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "vec", "input": [f"text {i}", "more"]},
        }
        for i in range(10)
    ]
    done = await server.wait((await server.submit(lines, endpoint="/v1/embeddings"))["id"])
    out = await server.lines(done["output_file_id"])
    assert len(out) == 10
    data = out[3]["response"]["body"]["data"]
    assert [d["index"] for d in data] == [0, 1] and len(data[0]["embedding"]) == 16


async def test_create_errors_are_openai_style(server: Server) -> None:
    file_id = (await server.upload([chat_line(0)])).json()["id"]

    async def create(**fields: Any) -> tuple[int, dict[str, Any]]:
        body = {
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            **fields,
        }
        response = await server.client.post("/v1/batches", json=body)
        return response.status_code, response.json()["error"]

    status, error = await create(completion_window="2w")
    assert status == 400 and error["param"] == "completion_window"
    assert error["type"] == "invalid_request_error"
    status, error = await create(endpoint="/v1/images")
    assert status == 400 and error["param"] == "endpoint"
    status, error = await create(input_file_id="file_missing")
    assert status == 404 and "file_missing" in error["message"]
    status, error = await create(metadata={"k": 1})
    assert status == 400 and error["param"] == "metadata.k"
    response = await server.client.post("/v1/batches", json={"endpoint": "/v1/embeddings"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "input_file_id"
    response = await server.client.get("/v1/batches/batch_nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = await server.client.post("/v1/batches/batch_nope/cancel")
    assert response.status_code == 404


async def test_list_batches_pages_with_after(server: Server) -> None:
    ids = [(await server.submit([chat_line(0)]))["id"] for _ in range(5)]
    first = (await server.client.get("/v1/batches", params={"limit": 2})).json()
    assert [b["id"] for b in first["data"]] == ids[::-1][:2] and first["has_more"]
    rest = (
        await server.client.get("/v1/batches", params={"limit": 10, "after": first["last_id"]})
    ).json()
    assert [b["id"] for b in rest["data"]] == ids[::-1][2:] and not rest["has_more"]


async def test_auto_routed_results_say_which_model_answered_and_why(
    server_factory: Any,
) -> None:
    from slackwater.config import ModelConfig

    models = [
        ModelConfig(
            name="cheap",
            engine="fake",
            endpoints=["/v1/chat/completions"],
            price={"input": "0.1", "output": "0.1"},
            quality={"default": 0.6},
        ),
        ModelConfig(
            name="dear",
            engine="fake",
            endpoints=["/v1/chat/completions"],
            price={"input": "5", "output": "5"},
            quality={"default": 0.9},
        ),
    ]
    server: Server = await server_factory(models=models)
    lines = [
        chat_line(0, model="auto"),
        chat_line(1, model="auto", slackwater={"min_quality": 0.8}),
    ]
    done = await server.wait((await server.submit(lines))["id"])
    assert done["status"] == "completed"
    out = await server.lines(done["output_file_id"])
    answered = [o["response"]["body"]["model"] for o in out]
    routes = [o["response"]["body"]["slackwater"]["route"] for o in out]
    assert answered == ["cheap", "dear"] == [r["model"] for r in routes]
    assert routes[1]["passed_over"]["cheap"] == "predicted quality 0.60 is under 0.80"


async def test_two_intakes_of_one_batch_stage_it_once(server_factory: Any) -> None:
    import asyncio

    from slackwater.runtime.intake import Intake

    server: Server = await server_factory(ingest_chunk=50)
    server.services.monitor.stop()  # type: ignore[union-attr]
    batch = await server.submit([chat_line(i) for i in range(500)])
    svc = server.services
    rival = Intake(svc.store, svc.blobs, svc.catalog, svc.clock, chunk=50)
    results = await asyncio.gather(svc.intake.ingest(batch["id"]), rival.ingest(batch["id"]))
    # One validates and activates it; the other finds it claimed (or, if it came late,
    # already running). Either way the lines are staged once.
    statuses = sorted(b.status.value for b in results)
    assert statuses in (["in_progress", "validating"], ["in_progress", "in_progress"])
    activated = await svc.store.get_batch(None, batch["id"])
    assert activated.request_counts.total == 500


async def test_wire_details_a_client_relies_on(server: Server) -> None:
    listed = await server.client.get("/v1/batches")
    assert listed.headers["x-request-id"].startswith("req_")
    missing = await server.client.post(
        "/v1/batches",
        json={
            "input_file_id": "file_nope",
            "endpoint": "/v1/chat/completions",
            "completion_window": "1h",
        },
    )
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "input_file_id"
    broken = await server.client.post(
        "/v1/batches", content=b'{"input_file_id": ', headers={"Content-Type": "application/json"}
    )
    error = broken.json()["error"]
    assert broken.status_code == 400 and error["param"] is None
    assert error["code"] == "invalid_json" and "not valid JSON" in error["message"]
    assert broken.headers["x-request-id"] != listed.headers["x-request-id"]


async def test_a_batch_reports_its_model_usage_and_output_expiry(server: Server) -> None:
    file_id = (await server.upload([chat_line(0), chat_line(1)])).json()["id"]
    created = (
        await server.client.post(
            "/v1/batches",
            json={
                "input_file_id": file_id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "1h",
                "output_expires_after": {"anchor": "created_at", "seconds": 7200},
            },
        )
    ).json()
    done = await server.wait(created["id"])
    assert done["model"] == "echo"
    out = await server.lines(done["output_file_id"])
    usage = [o["response"]["body"]["usage"] for o in out]
    assert done["usage"]["input_tokens"] == sum(u["prompt_tokens"] for u in usage)
    assert done["usage"]["output_tokens"] == sum(u["completion_tokens"] for u in usage)
    assert done["usage"]["total_tokens"] == sum(u["total_tokens"] for u in usage) > 0
    output = (await server.client.get(f"/v1/files/{done['output_file_id']}")).json()
    assert output["expires_at"] == output["created_at"] + 7200
    bad = await server.client.post(
        "/v1/batches",
        json={
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "1h",
            "output_expires_after": {"anchor": "completed_at", "seconds": 7200},
        },
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "output_expires_after.anchor"
