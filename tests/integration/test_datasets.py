"""Dataset jobs on a real store and the sklearn engine: a table predicted chunk by chunk
into an output table and the prediction cache; a job cut off mid-run resumed by another
runner without redoing its recorded chunks; bad tables refused, naming what is wrong."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slackwater.config import ModelConfig
from slackwater.domain.errors import InvalidRequest
from slackwater.domain.model import Catalog
from slackwater.domain.predictions import JobStatus
from slackwater.engines import create_engine
from slackwater.runtime.datasets import DatasetRunner
from slackwater.runtime.engines import EngineSet
from slackwater.runtime.schedules import Scheduler
from slackwater.store.blobs import LocalBlobStore
from slackwater.store.sql import SqlStore
from tests.contract import classical


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> classical.Saved:
    return classical.build(tmp_path_factory.mktemp("classical"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    store = SqlStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    await store.migrate()
    yield store
    await store.close()


def table(path: Path, saved: classical.Saved, repeat: int = 1) -> list[str]:
    """Iris as a CSV with an id column (`repeat` times over): the ids, in order."""
    ids = []
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "species_guess", *saved.features])
        for r in range(repeat):
            for i, row in enumerate(saved.rows.tolist()):
                ids.append(f"f{r}-{i}")
                writer.writerow([ids[-1], "?", *row])
    return ids


def runner(store: SqlStore, saved: classical.Saved, tmp_path: Path, clock: Clock) -> DatasetRunner:
    model = ModelConfig(
        name="iris",
        engine="sklearn",
        endpoints=["/v1/predictions"],
        options={"path": str(saved.skops), "features": saved.features},
    ).to_model()
    engines = EngineSet(Catalog([model]), create_engine)
    return DatasetRunner(store, engines, LocalBlobStore(tmp_path / "files"), clock)


def read(path: Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


async def test_a_table_is_predicted_into_an_output_table_and_the_cache(
    store: SqlStore, saved: classical.Saved, tmp_path: Path
) -> None:
    clock = Clock()
    jobs = runner(store, saved, tmp_path, clock)
    ids = table(tmp_path / "iris.csv", saved)
    job = await jobs.submit(
        "p1", "iris", str(tmp_path / "iris.csv"), "id", keep=["species_guess"], chunk_rows=40
    )
    assert await jobs.run_due()
    done = await store.get_job("p1", job.id)
    assert done.status is JobStatus.COMPLETED, done.error
    assert (done.chunks_done, done.rows_done, done.total_rows) == (4, 150, 150)
    assert done.result is not None
    out = read(tmp_path / "files" / done.result)
    assert [r["id"] for r in out] == ids and {r["species_guess"] for r in out} == {"?"}
    expected = saved.estimator.predict(saved.rows).tolist()
    assert [int(r["prediction"]) for r in out] == expected
    hit = await store.precomputed("iris", "f0-77")
    assert hit is not None and hit.value == expected[77] and hit.version == job.id
    assert await store.precomputed("iris", "nope") is None
    # The next run swaps in whole: its version replaces this one's.
    clock.now += timedelta(hours=1)
    source = str(tmp_path / "iris.csv")
    again = await jobs.submit("p1", "iris", source, "id", output="predict_proba")
    assert await jobs.run_due()
    hit = await store.precomputed("iris", "f0-77")
    assert hit is not None and hit.version == again.id and set(hit.value) == {"0", "1", "2"}
    assert hit.computed_at == clock.now


async def test_a_job_cut_off_mid_run_resumes_without_redoing_recorded_chunks(
    store: SqlStore, saved: classical.Saved, tmp_path: Path
) -> None:
    clock = Clock()
    first = runner(store, saved, tmp_path, clock)
    ids = table(tmp_path / "iris.csv", saved, repeat=4)  # 600 rows
    job = await first.submit("p1", "iris", str(tmp_path / "iris.csv"), "id", chunk_rows=50)
    recorded: list[int] = []
    cut = asyncio.Event()

    def progress(_: Any, rows: int) -> None:
        recorded.append(rows)
        if len(recorded) == 5:
            cut.set()

    first.on_progress = progress
    running = asyncio.create_task(first.run_due())
    await cut.wait()
    running.cancel()  # the process dies between chunks
    await asyncio.gather(running, return_exceptions=True)
    cut_off = await store.get_job("p1", job.id)
    assert cut_off.status is JobStatus.RUNNING and 5 <= cut_off.chunks_done < 12
    # Another runner takes it when the lease runs out, and reads past what was recorded.
    second = runner(store, saved, tmp_path, clock)
    redone: list[int] = []
    second.on_progress = lambda _, rows: redone.append(rows)
    assert not await second.run_due()  # the first one's lease still holds it
    clock.now += timedelta(seconds=61)
    assert await second.run_due()
    done = await store.get_job("p1", job.id)
    assert done.status is JobStatus.COMPLETED and done.chunks_done == 12
    assert len(redone) == 12 - cut_off.chunks_done
    assert done.result is not None
    out = read(tmp_path / "files" / done.result)
    assert [r["id"] for r in out] == ids  # every key once, in the table's order


async def test_bad_tables_are_refused_naming_the_column_and_row(
    store: SqlStore, saved: classical.Saved, tmp_path: Path
) -> None:
    jobs = runner(store, saved, tmp_path, Clock())
    source = tmp_path / "iris.csv"
    table(source, saved)
    with pytest.raises(InvalidRequest, match="no column 'key'"):
        await jobs.submit("p1", "iris", str(source), "key")
    lines = source.read_text().splitlines()
    header = lines[0].split(",")
    # A feature column missing.
    short = tmp_path / "short.csv"
    short.write_text("\n".join(",".join(line.split(",")[:-1]) for line in lines))
    with pytest.raises(InvalidRequest, match="no column 'petal width \\(cm\\)', a feature"):
        await jobs.submit("p1", "iris", str(short), "id")
    # A cell that is not a number: the job fails naming the file and column.
    words = tmp_path / "words.csv"
    broken = lines[:]
    cells = broken[60].split(",")
    cells[header.index("sepal width (cm)")] = "wide"
    broken[60] = ",".join(cells)
    words.write_text("\n".join(broken))
    job = await jobs.submit("p1", "iris", str(words), "id")
    await jobs.run_due()
    failed = await store.get_job("p1", job.id)
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert "words.csv" in failed.error["message"]
    assert "'sepal width (cm)'" in failed.error["message"] and "wide" in failed.error["message"]
    assert await store.precomputed("iris", "f0-0") is None  # nothing half-written is read
    # An empty cell: the job fails naming the row of the table.
    holes = tmp_path / "holes.csv"
    broken = lines[:]
    cells = broken[90].split(",")
    cells[header.index("petal length (cm)")] = ""
    broken[90] = ",".join(cells)
    holes.write_text("\n".join(broken))
    job = await jobs.submit("p1", "iris", str(holes), "id", chunk_rows=32)
    await jobs.run_due()
    failed = await store.get_job("p1", job.id)
    assert failed.error is not None
    assert failed.error["message"].endswith("row 90: feature 'petal length (cm)' is empty (NaN)")
    with pytest.raises(InvalidRequest, match=r"a \.csv or \.parquet file"):
        await jobs.submit("p1", "iris", str(tmp_path / "iris.json"), "id")


async def test_a_schedule_runs_on_its_window_and_shows_missed_and_failed_runs(
    store: SqlStore, saved: classical.Saved, tmp_path: Path
) -> None:
    clock = Clock()
    jobs = runner(store, saved, tmp_path, clock)
    scheduler = Scheduler(store, jobs, clock)
    table(tmp_path / "iris.csv", saved)
    with pytest.raises(InvalidRequest, match="either an interval"):
        await scheduler.create("p1", "iris", str(tmp_path / "iris.csv"), "id")
    with pytest.raises(InvalidRequest, match="not a cron expression"):
        await scheduler.create("p1", "iris", str(tmp_path / "iris.csv"), "id", cron="0 * *")
    schedule = await scheduler.create(
        "p1", "iris", str(tmp_path / "iris.csv"), "id", every_seconds=3600
    )
    start = clock.now
    assert await scheduler.tick() == 1  # the first run is due at once
    assert await scheduler.tick() == 0
    [first] = await store.schedule_runs(schedule.id, 10)
    assert first.status is JobStatus.QUEUED and first.deadline == start + timedelta(hours=1)
    assert await jobs.run_due()
    # Down for three and a half hours: the latest due run goes, the two before it are
    # recorded as missed, and the next is on the hour after.
    clock.now += timedelta(hours=3, minutes=30)
    assert await scheduler.tick() == 1
    runs = await store.schedule_runs(schedule.id, 10)
    assert [r.status for r in runs] == [
        JobStatus.QUEUED,
        JobStatus.MISSED,
        JobStatus.MISSED,
        JobStatus.COMPLETED,
    ]
    assert runs[0].deadline == start + timedelta(hours=4)
    moved = await store.get_schedule("p1", schedule.id)
    assert moved.next_run_at == start + timedelta(hours=4)
    # Two schedulers looking at the same due run: one starts it.
    assert not await store.start_runs(schedule, moved.next_run_at, [])
    # The table is gone at the next run: a failed run naming why, not silence.
    await jobs.run_due()
    (tmp_path / "iris.csv").unlink()
    clock.now = start + timedelta(hours=4)
    assert await scheduler.tick() == 0
    failed = (await store.schedule_runs(schedule.id, 1))[0]
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert "no such file" in failed.error["message"]


async def test_a_parquet_table_gives_a_parquet_output_with_probabilities(
    store: SqlStore, saved: classical.Saved, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {"id": [f"f{i}" for i in range(150)]}
    columns.update({f: saved.rows[:, i] for i, f in enumerate(saved.features)})
    pq.write_table(pa.table(columns), tmp_path / "iris.parquet", row_group_size=33)
    jobs = runner(store, saved, tmp_path, Clock())
    job = await jobs.submit(
        "p1", "iris", str(tmp_path / "iris.parquet"), "id", output="predict_proba", chunk_rows=64
    )
    assert await jobs.run_due()
    done = await store.get_job("p1", job.id)
    assert done.status is JobStatus.COMPLETED and done.total_rows == 150, done.error
    assert done.result is not None
    out = pq.read_table(tmp_path / "files" / done.result)
    assert out.column_names == ["id", "proba_0", "proba_1", "proba_2"]
    expected = saved.estimator.predict_proba(saved.rows)
    got = np.column_stack([out.column(f"proba_{c}").to_numpy() for c in range(3)])
    assert np.allclose(got, expected) and out.column("id").to_pylist() == columns["id"]
