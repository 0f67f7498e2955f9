"""The same batch on the in-process worker and on Ray actors, side by side in one run.

A batch of `--lines` chat lines through the API (ASGI, no network) on the `fake` engine
with a fixed cost per engine call (`--call-ms` for a batch of `--batch` requests, as a
model with a fixed step time); SQLite store. Rows:
- in-process: one worker, the engine in the worker's process (today's `slackwater worker`);
- ray, 1 actor / 2 actors: `slackwater worker --ray` on a local Ray (2 CPUs), one worker
  loop per actor, each actor a Ray worker process holding the engine;
- a simulated larger cluster: 4, 8 and 16 actors of a tenth of a CPU each (the engine's
  cost is waiting, as on a GPU, so this 2-core machine can hold them), each with the
  same fixed throughput: how throughput follows the actor count.

    python bench/ray_scale.py [--lines 4000] [--batch 16] [--call-ms 100] [--json]
Target: Ray at 1 actor within 10% of in-process (overhead <= 10%).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from slackwater.api.server import create_app
from slackwater.app import build, join_ray
from slackwater.config import ModelConfig, Settings


def lines(n: int) -> bytes:
    out = io.StringIO()
    for i in range(n):
        body = {"model": "echo", "messages": [{"role": "user", "content": f"q{i}"}]}
        out.write(json.dumps({"custom_id": f"r{i}", "method": "POST",
                              "url": "/v1/chat/completions", "body": body}) + "\n")  # fmt: skip
    return out.getvalue().encode()


async def one(args: argparse.Namespace, work: Path, actors: int | None) -> dict[str, Any]:
    """Seconds to run the batch: in process (`actors` None) or on that many actors."""
    ray = actors is not None
    count = actors or 1
    cpus = 1.0 if count <= 2 else 0.1
    settings = Settings.load(
        data_dir=work,
        lease_size=args.batch * 2,
        poll_seconds=0.01,
        models=[
            ModelConfig(
                name="echo",
                engine="fake",
                endpoints=["/v1/chat/completions"],
                max_batch_size=args.batch,
                options={"latency_ms": args.call_ms},
                ray={"num_cpus": cpus, "min_actors": count, "max_actors": count},
            )
        ],
    )
    services = build(settings, workers=count, ray=ray)
    if services.monitor is not None:
        services.monitor.interval = 0.02
    await services.start()
    engine = await services.engines.engine("echo")
    if ray:  # the actors are up and their engines loaded before the clock starts
        warm = {"model": "echo", "messages": [{"role": "user", "content": "warm"}]}
        await asyncio.gather(*(engine.run("/v1/chat/completions", [warm]) for _ in range(count)))
    app = create_app(services, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sw") as client:
        began = time.perf_counter()
        upload = await client.post(
            "/v1/files",
            data={"purpose": "batch"},
            files={"file": ("in.jsonl", lines(args.lines))},
        )
        batch = (
            await client.post(
                "/v1/batches",
                json={
                    "input_file_id": upload.json()["id"],
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                },
            )
        ).json()
        while batch["status"] not in {"completed", "failed", "expired", "cancelled"}:
            await asyncio.sleep(0.02)
            batch = (await client.get(f"/v1/batches/{batch['id']}")).json()
        seconds = time.perf_counter() - began
    assert batch["status"] == "completed", batch
    assert batch["request_counts"]["completed"] == args.lines, batch["request_counts"]
    await services.stop()
    await services.engines.close()
    return {
        "mode": f"ray, {count} actor{'s' * (count > 1)}" if ray else "in-process",
        "actors": count if ray else 0,
        "seconds": seconds,
        "requests_per_second": args.lines / seconds,
    }


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    join_ray("local")
    rows = []
    for actors in (None, 1, 2, 4, 8, 16):
        with tempfile.TemporaryDirectory() as work:
            rows.append(await one(args, Path(work), actors))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--call-ms", type=float, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(rows))
        return
    base = rows[0]["requests_per_second"]
    one_actor = rows[1]["requests_per_second"]
    print(f"{args.lines:,} lines, engine calls of {args.batch} at {args.call_ms:.0f} ms each:")
    print(f"{'':24}{'seconds':>10}{'req/s':>10}{'vs in-process':>15}{'vs 1 actor':>12}")
    for r in rows:
        rate = r["requests_per_second"]
        print(f"{r['mode']:24}{r['seconds']:>10.2f}{rate:>10.0f}{rate / base:>14.2f}x"
              f"{rate / one_actor:>11.2f}x")  # fmt: skip
    print(f"overhead of Ray at 1 actor: {100 * (1 - one_actor / base):.1f}% (target <= 10%)")


if __name__ == "__main__":
    main()
