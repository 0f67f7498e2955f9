"""Dashboard pages on a full store: 10,000 batches and 1,000,000 requests (finished
over the last 30 days, with their ledger lines) in SQLite, filled directly with rows
shaped as the queue writes them; each page is asked for `--repeat` times through the
ASGI app (no network), after one warm-up request: p50 / max milliseconds. The cost page
is timed twice: before the ledger's rollup has run (every request read, as right after
an upgrade) and after it (what a running server's monitor keeps it at).

    python bench/dashboard.py [--batches 10000] [--requests 1000000] [--repeat 5] [--json]
Target: every page < 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from slackwater.api.server import create_app
from slackwater.app import build
from slackwater.config import ModelConfig, Settings
from slackwater.store.schema import batches

NOW = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 30


async def fill(services: Any, n_batches: int, n_requests: int) -> str:
    """Batches of equal size, all of project "default"; the id of one in the middle."""
    per = n_requests // n_batches
    store = services.store
    ids = [f"batch_{i:020d}" for i in range(n_batches)]
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(batches),
            [
                {
                    "id": bid,
                    "project": "default",
                    "endpoint": "/v1/chat/completions",
                    "input_file_id": "file_x",
                    "completion_window": "24h",
                    "status": "completed" if i % 10 else "in_progress",
                    "total": per,
                    "completed": per - (i % 7),
                    "failed": i % 7,
                    "created_at": NOW + timedelta(seconds=i),
                    "expires_at": NOW + timedelta(days=1, seconds=i),
                    "cost_nano": 1000 * per,
                    "realtime_nano": 6000 * per,
                    "model": "echo",
                }
                for i, bid in enumerate(ids)
            ],
        )
    rows = [
        (
            bid,
            line,
            f"req-{line}",
            "echo",
            "/v1/chat/completions",
            "{}",
            "succeeded" if line % 50 else "failed",
            store.time(NOW + timedelta(days=1)),
            1,
            200 if line % 50 else 400,
            '{"error": {"message": "bad"}}' if not line % 50 else "{}",
            store.time(NOW - timedelta(days=DAYS) * (1 - b / n_batches)),
            "default",
            "local",
            "fake",
            10,
            20,
            1000,
            1000,
            6000,
            "batch",
        )
        for b, bid in enumerate(ids)
        for line in range(1, per + 1)
    ]
    sql = (
        "INSERT INTO requests (batch_id, line, custom_id, model, endpoint, body, status, "
        "deadline, attempts, status_code, response, finished_at, project, pool, engine, "
        "prompt_tokens, completion_tokens, compute_us, cost_nano, realtime_nano, tier) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    async with store.engine.begin() as conn:
        for start in range(0, len(rows), 100_000):
            await store.executemany(conn, sql, rows[start : start + 100_000])
    return ids[n_batches // 2]


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    settings = Settings.load(
        data_dir=work,
        models=[ModelConfig(name="echo", engine="fake", endpoints=["/v1/chat/completions"])],
    )
    services = build(settings, workers=0, monitor=False)
    await services.store.migrate()
    started = time.perf_counter()
    middle = await fill(services, args.batches, args.requests)
    filled = time.perf_counter() - started
    app = create_app(services, manage_lifecycle=False)
    pages = {
        "batches": "/ui/batches",
        "batches, failed only": "/ui/batches?failed=true",
        "batches, live rows": "/ui/batches/rows",
        "a batch": f"/ui/batches/{middle}",
        "a batch, failed only": f"/ui/batches/{middle}?failed=true",
        "cost and savings, not rolled up": "/ui/cost",
    }
    timings: dict[str, list[float]] = {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sw") as client:

        async def timed(path: str) -> list[float]:
            answer = await client.get(path)
            assert answer.status_code == 200, (path, answer.status_code)
            times = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                await client.get(path)
                times.append((time.perf_counter() - began) * 1000)
            return times

        for name, path in pages.items():
            timings[name] = await timed(path)
        began = time.perf_counter()
        rolled = {"requests": await services.store.roll_up_ledger(NOW)}
        rolled["seconds"] = time.perf_counter() - began
        timings["cost and savings, rolled up"] = await timed("/ui/cost")
    await services.store.close()
    return {"fill_seconds": filled, "pages": timings, "rollup": rolled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        result = asyncio.run(measure(args, Path(work)))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.batches:,} batches, {args.requests:,} requests (filled in "
          f"{result['fill_seconds']:.0f} s); milliseconds per page:")  # fmt: skip
    print(f"{'page':32}{'p50':>10}{'max':>10}")
    for name, times in result["pages"].items():
        print(f"{name:32}{statistics.median(times):>10.1f}{max(times):>10.1f}")
    rollup = result["rollup"]
    print(f"the rollup took {rollup['seconds']:.1f} s for {rollup['requests']:,} requests "
          f"(once; then a minute's worth at a time)")  # fmt: skip
    print("target: every page < 300 ms (the cost page: rolled up, as a server keeps it)")


if __name__ == "__main__":
    main()
