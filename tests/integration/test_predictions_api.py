"""Predictions of a classical model over the API: online (micro-batched: calls that come
together share an engine call) and as lines of a batch through the queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from slackwater.config import ModelConfig
from tests.contract import classical
from tests.integration.conftest import Server


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> classical.Saved:
    return classical.build(tmp_path_factory.mktemp("classical"))


def iris(saved: classical.Saved, **options: Any) -> ModelConfig:
    return ModelConfig(
        name="iris",
        engine="sklearn",
        endpoints=["/v1/predictions"],
        max_batch_size=256,
        options={"path": str(saved.skops), "features": saved.features, **options},
    )


async def test_online_predictions_are_micro_batched(
    server_factory: Callable[..., Any], saved: classical.Saved
) -> None:
    server: Server = await server_factory(
        models=[iris(saved, max_latency_ms=200)], max_realtime_calls_per_project=64
    )
    rows = saved.rows.tolist()
    calls = [{"model": "iris", "inputs": [row]} for row in rows[:40]]
    answers = await asyncio.gather(*(server.client.post("/v1/predictions", json=c) for c in calls))
    assert all(a.status_code == 200 for a in answers), answers[0].text
    got = [a.json()["predictions"][0] for a in answers]
    assert got == saved.estimator.predict(saved.rows[:40]).tolist()
    batcher = server.services.engines._batchers["iris"]
    assert batcher.calls < len(calls)  # they shared engine calls
    named = {"model": "iris", "inputs": [dict(zip(saved.features, rows[0], strict=True))],
             "output": "predict_proba"}  # fmt: skip
    proba = (await server.client.post("/v1/predictions", json=named)).json()
    assert proba["classes"] == [0, 1, 2] and len(proba["predictions"][0]) == 3
    bad = await server.client.post("/v1/predictions", json={"model": "iris", "inputs": [[1, 2]]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "inputs[0]"
    empty = await server.client.post("/v1/predictions", json={"model": "iris", "inputs": []})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "inputs"


async def test_predictions_as_batch_lines(
    server_factory: Callable[..., Any], saved: classical.Saved, tmp_path: Path
) -> None:
    server: Server = await server_factory(models=[iris(saved)])
    rows = saved.rows.tolist()
    lines = [
        {
            "custom_id": f"flower-{i}",
            "method": "POST",
            "url": "/v1/predictions",
            "body": {"model": "iris", "inputs": [rows[i]]},
        }
        for i in range(0, 150, 5)
    ]
    lines[3]["body"]["inputs"] = [rows[15][:3]]  # a feature short: fails alone
    batch = await server.submit(lines, endpoint="/v1/predictions")
    done = await server.wait(batch["id"])
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": 30, "completed": 29, "failed": 1}
    out = {o["custom_id"]: o for o in await server.lines(done["output_file_id"])}
    expected = saved.estimator.predict(saved.rows[::5]).tolist()
    for i, label in enumerate(expected):
        if i != 3:
            assert out[f"flower-{i * 5}"]["response"]["body"]["predictions"] == [label]
    [error] = await server.lines(done["error_file_id"])
    assert error["custom_id"] == "flower-15"
    assert error["response"]["body"]["error"]["param"] == "inputs[0]"


async def test_dataset_jobs_schedules_and_precomputed_answers_over_http(
    server_factory: Callable[..., Any], saved: classical.Saved, tmp_path: Path
) -> None:
    data = tmp_path / "server"
    (data / "datasets").mkdir(parents=True)
    ids = write_table(data / "datasets" / "flowers.csv", saved)
    server: Server = await server_factory(models=[iris(saved)], data_dir=data)
    outside = await server.client.post(
        "/v1/prediction_jobs", json={"model": "iris", "dataset": "../slackwater.db", "key": "id"}
    )
    assert outside.status_code == 400 and outside.json()["error"]["param"] == "dataset"
    made = await server.client.post(
        "/v1/prediction_jobs",
        json={"model": "iris", "dataset": "flowers.csv", "key": "id", "chunk_rows": 64},
    )
    assert made.status_code == 200, made.text
    job = made.json()
    for _ in range(300):
        job = (await server.client.get(f"/v1/prediction_jobs/{job['id']}")).json()
        if job["status"] == "completed":
            break
        await asyncio.sleep(0.02)
    assert job["status"] == "completed" and job["progress"]["rows"] == 150, job
    assert job["progress"]["chunks"] == 3 and job["compute_seconds"] > 0
    output = await server.client.get(job["output_url"])
    assert output.status_code == 200
    lines = output.text.splitlines()
    assert lines[0] == '"id","prediction"' and len(lines) == 151
    hit = await server.client.get(f"/v1/predictions/iris/{ids[120]}")
    assert hit.status_code == 200, hit.text
    answer = hit.json()
    assert answer["status"] == "present" and answer["job_id"] == job["id"]
    assert answer["prediction"] == saved.estimator.predict(saved.rows[120:121]).tolist()[0]
    stale = await server.client.get(f"/v1/predictions/iris/{ids[120]}?max_age=0.000001")
    assert stale.json()["status"] == "stale"
    missing = await server.client.get("/v1/predictions/iris/nobody")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "key"
    # Online with keys: rows the job predicted come from it, the others from the model.
    rows = saved.rows.tolist()
    expected = saved.estimator.predict(saved.rows).tolist()
    both = {"model": "iris", "keys": [ids[7], "new-flower"], "inputs": [rows[7], rows[140]]}
    mixed = (await server.client.post("/v1/predictions", json=both)).json()
    assert mixed["sources"] == ["precomputed", "model"]
    assert mixed["predictions"] == [expected[7], expected[140]]
    assert mixed["usage"] == {"rows": 1, "precomputed_rows": 1}
    proba = await server.client.post("/v1/predictions", json={**both, "output": "predict_proba"})
    assert proba.json()["sources"] == ["model", "model"]  # the job predicted labels only
    fresh = await server.client.post("/v1/predictions", json={**both, "max_age": 0.000001})
    assert fresh.json()["sources"] == ["model", "model"]
    bad = {"model": "iris", "keys": [ids[7], "x"], "inputs": [rows[7], [1.0, 2.0]]}
    refused = await server.client.post("/v1/predictions", json=bad)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "inputs[1]"
    unmatched = await server.client.post("/v1/predictions", json={**both, "keys": ["a"]})
    assert unmatched.status_code == 400 and unmatched.json()["error"]["param"] == "keys"
    # The dashboard counts where the rows asked by key were answered from: precomputed
    # (the lookup, the stale lookup, one online row), run on the model (1 + 2 + 2 rows),
    # and the lookup of a key with nothing precomputed.
    page = (await server.client.get("/ui/predictions")).text
    lookups = page.split('id="lookups"')[1].split("</table>")[0]
    assert "<td>iris</td><td>3</td><td>5</td><td>1</td><td>33.3%</td>" in lookups
    # An uploaded table (purpose user_data) serves as well as one in the directory.
    upload = await server.client.post(
        "/v1/files",
        data={"purpose": "user_data"},
        files={"file": ("flowers.csv", (data / "datasets" / "flowers.csv").read_bytes())},
    )
    assert upload.status_code == 200, upload.text
    uploaded = await server.client.post(
        "/v1/prediction_jobs",
        json={"model": "iris", "dataset": upload.json()["id"], "key": "id"},
    )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["format"] == "csv"
    batch_file = await server.client.post(
        "/v1/files", data={"purpose": "batch"}, files={"file": ("x.jsonl", b"{}\n")}
    )
    not_table = await server.client.post(
        "/v1/prediction_jobs",
        json={"model": "iris", "dataset": batch_file.json()["id"], "key": "id"},
    )
    assert not_table.status_code == 400 and "is not a table" in not_table.text
    # A schedule: its first run is due at once (started by whichever tick comes first,
    # the server's or this one, and only once).
    schedule = await server.client.post(
        "/v1/prediction_schedules",
        json={"model": "iris", "dataset": "flowers.csv", "key": "id", "every": "1h"},
    )
    assert schedule.status_code == 200, schedule.text
    await server.services.scheduler.tick()
    shown = (await server.client.get(f"/v1/prediction_schedules/{schedule.json()['id']}")).json()
    assert len(shown["runs"]) == 1 and shown["missed_runs"] == 0
    bad = await server.client.post(
        "/v1/prediction_schedules",
        json={"model": "iris", "dataset": "flowers.csv", "key": "id", "cron": "every hour"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cron"


def write_table(path: Path, saved: classical.Saved) -> list[str]:
    ids = [f"flower-{i}" for i in range(len(saved.rows))]
    lines = [",".join(["id", *saved.features])]
    lines += [
        ",".join([i, *map(str, row)]) for i, row in zip(ids, saved.rows.tolist(), strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return ids
