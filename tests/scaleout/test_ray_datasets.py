"""Dataset jobs of a classical model on Ray Data: the table read and predicted by a pool
of actors holding the model, the parts recorded here; a run that dies mid-job resumes
without predicting again the keys it had recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from slackwater.config import ModelConfig
from tests.contract import classical
from tests.integration.conftest import Server
from tests.integration.test_predictions_api import write_table

pytestmark = pytest.mark.ray


class Crash(Exception):
    """The process dies here (nothing after it runs: no hold, no end)."""


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> classical.Saved:
    return classical.build(tmp_path_factory.mktemp("classical"))


async def test_a_dataset_job_on_ray_data_resumes_by_key(
    ray_cluster: Any, server_factory: Callable[..., Any], saved: classical.Saved, tmp_path: Path
) -> None:
    data = tmp_path / "server"
    (data / "datasets").mkdir(parents=True)
    ids = write_table(data / "datasets" / "flowers.csv", saved)
    iris = ModelConfig(
        name="iris",
        engine="sklearn",
        endpoints=["/v1/predictions"],
        options={"path": str(saved.skops), "features": saved.features},
        ray={"num_cpus": 0.5, "min_actors": 1, "max_actors": 2},
    )
    server: Server = await server_factory(
        models=[iris], data_dir=data, ray=True, workers=0, lease_seconds=1
    )
    made = await server.client.post(
        "/v1/prediction_jobs",
        json={"model": "iris", "dataset": "flowers.csv", "key": "id", "chunk_rows": 32},
    )
    assert made.status_code == 200, made.text
    job_id = made.json()["id"]
    runner = server.services.datasets
    predicted: list[int] = []

    def crash_after_two(job: Any, rows: int) -> None:
        predicted.append(rows)
        if len(predicted) == 2:
            raise Crash()

    runner.on_progress = crash_after_two
    with pytest.raises(Crash):
        await runner.run_due(job_id)
    halfway = (await server.client.get(f"/v1/prediction_jobs/{job_id}")).json()
    done_rows = predicted[-1]  # two parts (Ray Data sizes them by its blocks, up to 32)
    assert halfway["status"] == "running" and halfway["progress"]["rows"] == done_rows < 150
    # Another runner takes the job once its lease runs out, and predicts only the rest.
    server.clock.offset += timedelta(seconds=5)
    runner.owner = "dataw_rescuer"
    resumed: list[int] = []
    runner.on_progress = lambda job, rows: resumed.append(job.rows_done)
    assert await runner.run_due(job_id)
    job = (await server.client.get(f"/v1/prediction_jobs/{job_id}")).json()
    assert job["status"] == "completed", job["error"]
    # No key predicted twice: the rows recorded add up to the table's, once.
    assert job["progress"]["rows"] == 150 and job["progress"]["chunks"] >= 3
    output = await server.client.get(job["output_url"])
    lines = output.text.splitlines()
    assert lines[0] == '"id","prediction"' and len(lines) == 151
    expected = saved.estimator.predict(saved.rows).tolist()
    got = {row.split(",")[0].strip('"'): int(row.split(",")[1]) for row in lines[1:]}
    assert got == {i: label for i, label in zip(ids, expected, strict=True)}
    hit = (await server.client.get(f"/v1/predictions/iris/{ids[140]}")).json()
    assert hit["prediction"] == expected[140]


async def test_a_bad_table_on_ray_data_fails_its_job_naming_the_column(
    ray_cluster: Any, server_factory: Callable[..., Any], saved: classical.Saved, tmp_path: Path
) -> None:
    data = tmp_path / "server"
    (data / "datasets").mkdir(parents=True)
    table = data / "datasets" / "odd.csv"
    write_table(table, saved)
    rows = table.read_text().splitlines()
    rows[100] = rows[100].rsplit(",", 1)[0] + ",tall"  # not a number
    table.write_text("\n".join(rows) + "\n")
    iris = ModelConfig(
        name="iris",
        engine="sklearn",
        endpoints=["/v1/predictions"],
        options={"path": str(saved.skops), "features": saved.features},
        ray={"num_cpus": 0.5},
    )
    server: Server = await server_factory(models=[iris], data_dir=data, ray=True, workers=0)
    made = await server.client.post(
        "/v1/prediction_jobs",
        json={"model": "iris", "dataset": "odd.csv", "key": "id", "chunk_rows": 32},
    )
    job_id = made.json()["id"]
    await server.services.datasets.run_due(job_id)
    job = (await server.client.get(f"/v1/prediction_jobs/{job_id}")).json()
    assert job["status"] == "failed", job
    assert "odd.csv" in job["error"]["message"] and "tall" in job["error"]["message"]
    await asyncio.sleep(0)
