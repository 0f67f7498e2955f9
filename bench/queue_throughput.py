"""Throughput and memory of the queue itself: the `fake` engine at zero latency.

For each size and store, a real `slackwater serve --workers 0` and one `slackwater worker`
process run one batch; the benchmark prints ingest lines/s (upload to in_progress),
end-to-end requests/s (upload to completed) and the peak RSS (VmHWM) of both processes.
A run of 10,000 lines lasts well under a second, so one run says little on a shared VM:
sizes under 1,000,000 lines run `--repeat` times (fresh processes and data each time)
and the median of each rate is printed (peak RSS: the largest).

    python bench/queue_throughput.py [--sizes 10000,100000,1000000] [--stores sqlite,postgresql]
Targets on the 2-core dev machine: ingest >= 50,000 lines/s; end-to-end >= 10,000
requests/s on SQLite; peak RSS < 500 MB at 1M lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

# A database of its own, so a test run resetting `test` cannot pull the floor away.
PG_SERVER = os.environ.get("SLACKWATER_BENCH_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")
PG_URL = f"{PG_SERVER}/slackwater_bench"
CONFIG = """
{database}
lease_size = 2000
poll_seconds = 0.05
max_file_lines = 2000000

[[models]]
name = "echo"
engine = "fake"
endpoints = ["/v1/chat/completions"]
max_batch_size = 500
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_input(path: Path, size: int) -> None:
    line = (
        '{"custom_id": "r%d", "method": "POST", "url": "/v1/chat/completions", "body": '
        '{"model": "echo", "max_tokens": 8, "messages": [{"role": "user", "content": '
        '"summarise ticket %d for the weekly report"}]}}\n'
    )
    with path.open("w") as handle:
        for i in range(size):
            handle.write(line % (i, i))


def peak_rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) / 1024
    return float("nan")


async def reset_postgres() -> None:
    import asyncpg

    admin = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = 'slackwater_bench'"):
            await admin.execute("CREATE DATABASE slackwater_bench")
    finally:
        await admin.close()
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


def run_one(size: int, store: str, work: Path) -> dict[str, Any]:
    data = work / f"{store}-{size}"
    data.mkdir(parents=True)
    database = f'database_url = "{PG_URL}"' if store == "postgresql" else ""
    if store == "postgresql":
        asyncio.run(reset_postgres())
    config = data / "sw.toml"
    config.write_text(CONFIG.format(database=database))
    source = data / "in.jsonl"
    write_input(source, size)
    port = free_port()
    base = [sys.executable, "-m", "slackwater"]
    common = ["--config", str(config), "--data-dir", str(data)]
    logs = [(data / name).open("w") for name in ("serve.log", "worker.log")]
    server = subprocess.Popen(
        [*base, "serve", *common, "--port", str(port), "--workers", "0"],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen([*base, "worker", *common], stdout=logs[1], stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            for _ in range(300):
                try:
                    client.get("/health")
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            start = time.perf_counter()
            with source.open("rb") as handle:
                file = client.post(
                    "/v1/files", files={"file": ("in.jsonl", handle)}, data={"purpose": "batch"}
                ).json()
            uploaded = time.perf_counter() - start
            batch = client.post(
                "/v1/batches",
                json={
                    "input_file_id": file["id"],
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                },
            ).json()
            ingested = None
            while batch["status"] not in ("completed", "failed", "expired", "cancelled"):
                # Fine enough not to add much to a 0.2 s ingest; a status read is cheap.
                time.sleep(0.01)
                batch = client.get(f"/v1/batches/{batch['id']}").json()
                assert "status" in batch, batch
                if ingested is None and batch["status"] != "validating":
                    ingested = time.perf_counter() - start
            total = time.perf_counter() - start
            assert batch.get("status") == "completed", batch
            assert batch["request_counts"]["completed"] == size, batch
            lines = 0
            with client.stream("GET", f"/v1/files/{batch['output_file_id']}/content") as body:
                for chunk in body.iter_bytes():
                    lines += chunk.count(b"\n")
            assert lines == size
        return {
            "store": store,
            "lines": size,
            "upload_seconds": round(uploaded, 2),
            "ingest_lines_per_s": round(size / (ingested or total)),
            "end_to_end_requests_per_s": round(size / total),
            "server_peak_rss_mb": round(peak_rss_mb(server.pid)),
            "worker_peak_rss_mb": round(peak_rss_mb(worker.pid)),
        }
    finally:
        for proc in (worker, server):
            proc.send_signal(signal.SIGTERM)
        for proc in (worker, server):
            proc.wait(timeout=60)
        for log in logs:
            log.close()


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for repeated runs: the median of each rate, the largest peak RSS."""
    row = dict(runs[0], runs=len(runs))
    for key in ("upload_seconds", "ingest_lines_per_s", "end_to_end_requests_per_s"):
        row[key] = statistics.median(run[key] for run in runs)
    for key in ("server_peak_rss_mb", "worker_peak_rss_mb"):
        row[key] = max(run[key] for run in runs)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=3, help="runs of sizes under 1M lines")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for store in args.stores.split(","):
            for size in map(int, args.sizes.split(",")):
                runs = []
                for attempt in range(args.repeat if size < 1_000_000 else 1):
                    runs.append(run_one(size, store, Path(tmp) / str(attempt)))
                    if not args.json:
                        print(json.dumps(runs[-1]), file=sys.stderr)
                rows.append(median_run(runs))
    if args.json:
        print(json.dumps(rows))
        return
    columns = ("lines", "runs", "ingest/s", "e2e req/s", "server MB", "worker MB")
    print(f"{'store':<11}" + "".join(f"{c:>11}" for c in columns))
    for row in rows:
        print(
            f"{row['store']:<11}{row['lines']:>11}{row['runs']:>11}"
            f"{row['ingest_lines_per_s']:>11.0f}{row['end_to_end_requests_per_s']:>11.0f}"
            f"{row['server_peak_rss_mb']:>11}{row['worker_peak_rss_mb']:>11}"
        )
    print("targets: ingest >= 50000/s, end-to-end >= 10000/s (SQLite), peak RSS < 500 MB")


if __name__ == "__main__":
    main()
