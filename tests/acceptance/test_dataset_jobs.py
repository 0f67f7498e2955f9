"""A dataset job through the CLI, killed with SIGKILL midway and resumed: every key is
predicted once in the output, with the model's own answers, and the recorded chunks are
not redone."""

from __future__ import annotations

import asyncio
import csv
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from slackwater.store.sql import SqlStore
from tests.acceptance.conftest import Process, run_cli, start
from tests.contract import classical

pytestmark = pytest.mark.slow
ROWS = 200_000
CHUNK = 10_000


def chunks_done(database: Path, job_id: str) -> int:
    async def read() -> int:
        store = SqlStore(f"sqlite:///{database}")
        try:
            return (await store.get_job(None, job_id)).chunks_done
        finally:
            await store.close()

    return asyncio.run(read())


def test_a_killed_dataset_job_resumes_and_predicts_each_key_once(
    tmp_path: Path, processes: list[Process]
) -> None:
    saved = classical.build(tmp_path / "models")
    rng = np.random.default_rng(7)
    rows = saved.rows[rng.integers(0, len(saved.rows), ROWS)] + rng.normal(0, 0.2, (ROWS, 4))
    table = tmp_path / "flowers.csv"
    with table.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", *saved.features])
        writer.writerows([f"k{i}", *(round(v, 4) for v in row)] for i, row in enumerate(rows))
    features = ", ".join(f'"{f}"' for f in saved.features)
    config = tmp_path / "slackwater.toml"
    config.write_text(
        f"""lease_seconds = 2

[[models]]
name = "iris"
engine = "sklearn"
endpoints = ["/v1/predictions"]
options = {{ path = "{saved.skops}", features = [{features}] }}
"""
    )
    data = tmp_path / "data"
    where = ["--config", str(config), "--data-dir", str(data)]
    command = ["predictions", "run", "--model", "iris", "--dataset", str(table), "--key", "id",
               "--chunk-rows", str(CHUNK), "--no-progress", *where]  # fmt: skip
    log = tmp_path / "run.log"
    first = start(command, log)
    processes.append(first)
    limit = time.monotonic() + 120
    job_id = None
    while job_id is None or chunks_done(data / "slackwater.db", job_id) < 3:
        assert first.popen.poll() is None, log.read_text()
        assert time.monotonic() < limit, log.read_text()
        if job_id is None and "job pjob_" in log.read_text():
            job_id = log.read_text().split("job ", 1)[1].split()[0]
        time.sleep(0.05)
    first.stop(signal.SIGKILL)
    recorded = chunks_done(data / "slackwater.db", job_id)
    assert recorded < ROWS // CHUNK, "the job ended before the kill"

    out = tmp_path / "predictions.csv"
    resumed = run_cli("predictions", "resume", job_id, "--out", str(out), "--no-progress", *where)
    assert resumed.returncode == 0, resumed.stderr
    assert '"status": "completed"' in resumed.stdout
    with out.open() as handle:
        got = list(csv.DictReader(handle))
    assert [r["id"] for r in got] == [f"k{i}" for i in range(ROWS)]  # each key once, in order
    # The table was written rounded: the model's answers on the same rounded rows.
    expected = saved.estimator.predict(np.round(rows, 4))
    assert np.array_equal(np.array([int(r["prediction"]) for r in got]), expected)
    looked_up = run_cli("predictions", "get", "iris", "k12345", *where)
    assert looked_up.returncode == 0 and f'"prediction": {expected[12345]}' in looked_up.stdout
