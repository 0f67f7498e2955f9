"""Classical-model predictions, side by side in one run, on one model (gradient-boosted
trees fitted on iris, or `--model logistic`, saved with skops, served by the sklearn
engine):

  1. Online: calls one at a time vs micro-batched (fixed wait, adaptive wait), at several
     offered loads (open-loop arrivals): throughput and p50 / p99 latency. Calls go
     through `EngineSet.run`, as the API's handler calls it (no HTTP).
  2. A dataset job over a generated table (`--rows`, default 1,000,000) through
     `slackwater predictions run` in its own process: rows/s and peak memory, against the
     same work written by hand in one process (pyarrow reads the whole table, the
     estimator's own predict, pyarrow writes the output) and against predict alone.
  3. Precomputed lookups from the job's cache: p50 / p99 and lookups/s.
  4. Cost per 1M predictions: online on an always-on instance vs a scheduled job on spot.

    python bench/predictions.py [--rows 1000000] [--seconds 3] [--json]
Targets: micro-batched >= 3x throughput at equal or lower p99; a job >= 0.8x of the
hand-written pass, < 500 MB peak; lookups in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from slackwater.config import ModelConfig
from slackwater.domain.batch import Endpoint
from slackwater.domain.model import Catalog
from slackwater.engines import create_engine
from slackwater.runtime.engines import EngineSet
from slackwater.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.contract import classical  # noqa: E402  (the same model the tests use)

MODES = {"one at a time": ("off", 1), "fixed 5 ms": ("fixed", 512), "adaptive": ("adaptive", 512)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


async def online(
    saved: classical.Saved, mode: str, rows: int, rate: float, seconds: float
) -> dict[str, float]:
    batching, max_rows = MODES[mode]
    model = ModelConfig(
        name="iris",
        engine="sklearn",
        endpoints=["/v1/predictions"],
        max_batch_size=max_rows if rows == 1 else rows,
        options={
            "path": str(saved.skops),
            "online_batching": batching,
            "max_latency_ms": 5,
            "trusted": trusted(saved),
        },
    ).to_model()
    engines = EngineSet(Catalog([model]), create_engine, realtime_calls_per_project=1 << 30)
    await engines.engine("iris")
    sample = saved.rows.tolist()
    latencies: list[float] = []
    rng = random.Random(1)

    async def call(n: int) -> None:
        started = time.perf_counter()
        body = {"model": "iris", "inputs": [sample[n % len(sample)]]}
        [outcome] = await engines.run("iris", Endpoint.PREDICTIONS, [body], realtime=True)
        assert outcome.ok, outcome.body
        latencies.append(time.perf_counter() - started)

    tasks = []
    began = time.perf_counter()
    next_at = began
    n = 0
    while next_at - began < seconds:  # open loop: arrivals do not wait for answers
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(call(n)))
        n += 1
        next_at += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - began
    await engines.close()
    return {
        "offered": rate,
        "throughput": len(latencies) / wall,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def trusted(saved: classical.Saved) -> list[str]:
    """The types in the model file skops does not trust by default (looked at: ours)."""
    import skops.io

    return list(skops.io.get_untrusted_types(file=saved.skops))


def boosted(saved: classical.Saved, where: Path) -> classical.Saved:
    """Gradient-boosted trees on the same data: a model whose predict costs something."""
    import skops.io
    from sklearn.ensemble import HistGradientBoostingClassifier

    labels = saved.estimator.predict(saved.rows)
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(saved.rows, labels)
    skops.io.dump(model, where / "boosted.skops")
    return dataclasses.replace(saved, skops=where / "boosted.skops", estimator=model)


def write_table(saved: classical.Saved, rows: int, path: Path) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(7)
    data = saved.rows[rng.integers(0, len(saved.rows), rows)] + rng.normal(0, 0.2, (rows, 4))
    data = np.round(data, 4)
    columns = {"id": pa.array([f"k{i}" for i in range(rows)])}
    for i, name in enumerate(saved.features):
        columns[name] = pa.array(data[:, i])
    pcsv.write_csv(pa.table(columns), path)
    return data


def by_hand(saved: classical.Saved, table: Path, out: Path) -> float:
    """What one would write without slackwater: read it all, predict, write."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    started = time.perf_counter()
    read = pcsv.read_csv(table)
    rows = np.column_stack([read.column(f).to_numpy() for f in saved.features])
    labels = saved.estimator.predict(rows)
    pcsv.write_csv(pa.table({"id": read.column("id"), "prediction": pa.array(labels)}), out)
    return time.perf_counter() - started


PEAK = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(done.returncode)"
)


def job(saved: classical.Saved, table: Path, work: Path, cache: Path) -> tuple[float, float, str]:
    """`slackwater predictions run` in its own process, models cached in `cache`:
    (seconds, peak MB, job id)."""
    features = ", ".join(f'"{f}"' for f in saved.features)
    config = work / "bench.toml"
    config.write_text(
        f'[[models]]\nname = "iris"\nengine = "sklearn"\nendpoints = ["/v1/predictions"]\n'
        f'options = {{ path = "{saved.skops}", features = [{features}], '
        f"trusted = {json.dumps(trusted(saved))} }}\n"
    )
    command = [sys.executable, "-c", PEAK, sys.executable, "-m", "slackwater", "predictions",
               "run", "--model", "iris", "--dataset", str(table), "--key", "id",
               "--no-progress", "--config", str(config),
               "--data-dir", str(work / "data")]  # fmt: skip
    started = time.perf_counter()
    env = {**os.environ, "SLACKWATER_MODEL_CACHE_DIR": str(cache)}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(done.stderr)
    peak = int(done.stderr.strip().splitlines()[-1]) / 1024
    return seconds, peak, json.loads(done.stdout)["id"]


async def lookups(database: Path, count: int, rows: int) -> dict[str, float]:
    store = SqlStore(f"sqlite:///{database}")
    rng = random.Random(3)
    latencies = []
    began = time.perf_counter()
    for _ in range(count):
        key = f"k{rng.randrange(rows)}"
        started = time.perf_counter()
        hit = await store.precomputed("iris", key)
        latencies.append(time.perf_counter() - started)
        assert hit is not None
    wall = time.perf_counter() - began
    await store.close()
    return {
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "per_second": count / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="per online measurement")
    parser.add_argument("--loads", default="500,1500,4000,8000", help="offered calls/s")
    parser.add_argument("--on-demand-hour", type=float, default=0.10, help="$/hour, online")
    parser.add_argument("--spot-hour", type=float, default=0.03, help="$/hour, the job")
    parser.add_argument("--model", choices=("boosting", "logistic"), default="boosting")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        saved = classical.build(work / "models")
        if args.model == "boosting":
            saved = boosted(saved, work / "models")
        result: dict[str, Any] = {"online": {}}
        for rate in (float(r) for r in args.loads.split(",")):
            for mode in MODES:
                got = asyncio.run(online(saved, mode, 1, rate, args.seconds))
                result["online"].setdefault(mode, []).append(got)
        table = work / "table.csv"
        data = write_table(saved, args.rows, table)
        hand = by_hand(saved, table, work / "by_hand.csv")
        started = time.perf_counter()
        saved.estimator.predict(data)
        predict_only = time.perf_counter() - started
        # The process alone (imports, the model): a job over a table of ten rows.
        small = work / "small.csv"
        small.write_text("".join(table.open().readlines()[:11]))
        (work / "small").mkdir()
        (work / "first").mkdir()
        # The first start vets the skops file (skops imports every estimator to list the
        # types it trusts); later starts load the vetted copy from the model cache.
        first_seconds, first_base, _ = job(saved, small, work / "first", work / "cache")
        start_seconds, base, _ = job(saved, small, work / "small", work / "cache")
        seconds, peak, _ = job(saved, table, work, work / "cache")
        result["job"] = {
            "rows": args.rows,
            "seconds": seconds,
            "rows_per_second": args.rows / seconds,
            "by_hand_seconds": hand,
            "predict_only_seconds": predict_only,
            "peak_mb": peak,
            "process_mb": base,
            "start_seconds": start_seconds,
            "first_start_seconds": first_seconds,
            "first_process_mb": first_base,
        }
        result["lookups"] = asyncio.run(lookups(work / "data" / "slackwater.db", 5000, args.rows))
    best_one = max(r["throughput"] for r in result["online"]["one at a time"])
    online_hours = 1e6 / best_one / 3600
    job_hours = seconds / args.rows * 1e6 / 3600
    result["cost_per_million"] = {
        "online": online_hours * args.on_demand_hour,
        "scheduled_job": job_hours * args.spot_hour,
    }
    if args.json:
        print(json.dumps(result))
        return
    head = f"{'online, calls of one row':28}{'offered/s':>10}{'done/s':>10}"
    print(f"{head}{'p50 ms':>10}{'p99 ms':>10}")
    for mode, runs in result["online"].items():
        for r in runs:
            print(f"{mode:28}{r['offered']:>10.0f}{r['throughput']:>10.0f}"
                  f"{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}")  # fmt: skip
    j = result["job"]
    print(f"\ndataset job, {j['rows']:,} rows (CSV in, CSV out, cache by key):")
    print(f"  slackwater predictions run  {j['seconds']:7.2f} s  "
          f"{j['rows_per_second']:>10,.0f} rows/s  peak {j['peak_mb']:.0f} MB")  # fmt: skip
    print(
        f"  of which the process itself (imports, the model; a 10-row job): "
        f"{j['process_mb']:.0f} MB; the job's own: {j['peak_mb'] - j['process_mb']:.0f} MB"
    )
    print(f"  by hand (read, predict, write in one process) {j['by_hand_seconds']:.2f} s: "
          f"job/hand throughput {j['by_hand_seconds'] / j['seconds']:.2f}x")  # fmt: skip
    run_only = j["seconds"] - j["start_seconds"]
    print(
        f"  less the process's start ({j['start_seconds']:.2f} s, a 10-row job): "
        f"{run_only:.2f} s, {j['by_hand_seconds'] / run_only:.2f}x"
    )
    alone = j["predict_only_seconds"]
    print(f"  predict alone on the array {alone:.2f} s: job/predict {alone / j['seconds']:.2f}x, "
          f"less the process's start {alone / run_only:.2f}x")  # fmt: skip
    print(
        f"  the model's first start (vetting the skops file): {j['first_start_seconds']:.2f} s, "
        f"{j['first_process_mb']:.0f} MB; later starts load the vetted copy"
    )
    lk = result["lookups"]
    print(f"\nprecomputed lookups: p50 {lk['p50_ms']:.3f} ms, p99 {lk['p99_ms']:.3f} ms, "
          f"{lk['per_second']:,.0f}/s (one at a time, SQLite)")  # fmt: skip
    c = result["cost_per_million"]
    print(f"\ncost per 1M predictions: online one at a time ${c['online']:.5f} "
          f"(${args.on_demand_hour}/h) vs scheduled job ${c['scheduled_job']:.5f} "
          f"(${args.spot_hour}/h): {c['online'] / c['scheduled_job']:.0f}x")  # fmt: skip
    print("targets: micro-batched >= 3x throughput at <= p99; job >= 0.8x predict, < 500 MB")


if __name__ == "__main__":
    main()
