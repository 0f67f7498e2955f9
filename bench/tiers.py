"""Three tiers on one local model: real time, flex and batch, under one mixed load.

A real `slackwater serve` with the default chat model (SmolLM2-135M, on this machine's
CPU), on a local pool priced at `--price-per-hour`. In one run, side by side:
  1. real-time calls at a steady rate, alone: p50/p95 latency;
  2. `--flex` requests answered one at a time in real time, then the same number sent
     at once on the flex tier: the two throughputs;
  3. the mixed load: a batch of `--batch` lines and `--flex` flex calls flood the queue
     while real-time calls keep coming at the same rate: real-time p50/p95 under the
     load, flex p50/p95 against the flex window;
  4. cost per million tokens per tier, from the server's ledger.

    python bench/tiers.py [--flex 48] [--batch 96] [--realtime 20] [--rate R] [--json]
Targets: real time under load within 1.2x of alone (p50 and p95); flex throughput >= 3x
one at a time; every flex answer within its window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from slackwater.config import Settings

MODEL = "SmolLM2-135M-Instruct"
MAX_TOKENS = 16
CONFIG = """
[[pools]]
name = "local"
kind = "local"
price_per_hour = {price}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chat(prompt: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0.7,  # not deterministic: nothing is answered from the cache
        **extra,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed(client: httpx.AsyncClient, body: dict[str, Any]) -> float:
    start = time.perf_counter()
    answer = await client.post("/v1/chat/completions", json=body)
    if answer.is_error:
        raise RuntimeError(f"{answer.status_code}: {answer.text}")
    return time.perf_counter() - start


async def flex_flood(client: httpx.AsyncClient, count: int, tag: str) -> list[float]:
    """`count` flex calls sent at once; their latencies."""
    bodies = [chat(f"{tag} flex {i}: name a fruit.", service_tier="flex") for i in range(count)]
    return list(await asyncio.gather(*(timed(client, body) for body in bodies)))


async def steady(client: httpx.AsyncClient, count: int, rate: float, tag: str) -> list[float]:
    """`count` real-time calls, one every 1/`rate` seconds, each on its own."""
    calls = []
    for i in range(count):
        calls.append(asyncio.create_task(timed(client, chat(f"{tag} question {i}: say hi."))))
        await asyncio.sleep(1 / rate)
    return list(await asyncio.gather(*calls))


async def submit_batch(client: httpx.AsyncClient, lines: int) -> str:
    body = "".join(
        json.dumps(
            {
                "custom_id": f"b{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": chat(f"Batch item {i}: name a colour."),
            }
        )
        + "\n"
        for i in range(lines)
    )
    file = (
        await client.post(
            "/v1/files", files={"file": ("in.jsonl", body.encode())}, data={"purpose": "batch"}
        )
    ).json()
    batch = (
        await client.post(
            "/v1/batches",
            json={
                "input_file_id": file["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
    ).json()
    return str(batch["id"])


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=3600) as client:
        await timed(client, chat("warm up"))  # loads the model
        if args.rate is None:  # real time takes a quarter of the model's time alone
            args.rate = 0.25 / await timed(client, chat("how long is one call?"))
        alone = await steady(client, args.realtime, args.rate, "alone")

        start = time.perf_counter()
        for i in range(args.flex):
            await timed(client, chat(f"Flex item {i}: name a fruit."))
        one_at_a_time = args.flex / (time.perf_counter() - start)

        start = time.perf_counter()
        await flex_flood(client, args.flex, "alone")
        flex_alone = args.flex / (time.perf_counter() - start)

        batch_id = await submit_batch(client, args.batch)
        flooding = asyncio.create_task(flex_flood(client, args.flex, "loaded"))
        loaded = await steady(client, args.realtime, args.rate, "loaded")
        flex = await flooding
        while True:
            batch = (await client.get(f"/v1/batches/{batch_id}")).json()
            if batch["status"] in ("completed", "failed", "expired", "cancelled"):
                break
            await asyncio.sleep(1)
    return {
        "realtime_rate": args.rate,
        "realtime_alone": alone,
        "realtime_loaded": loaded,
        "flex": flex,
        "flex_per_second": flex_alone,
        "one_at_a_time_per_second": one_at_a_time,
        "batch_status": batch["status"],
        "batch_completed": batch["request_counts"]["completed"],
    }


def ledger(data: Path, config: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "slackwater", "report", "--by", "tier", "--json"),
            *("--data-dir", str(data), "--config", str(config)),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows: list[dict[str, Any]] = json.loads(done.stdout)["rows"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flex", type=int, default=48, help="flex requests")
    parser.add_argument("--batch", type=int, default=96, help="batch lines")
    parser.add_argument("--realtime", type=int, default=20, help="real-time calls per phase")
    parser.add_argument(
        "--rate",
        type=float,
        help="real-time calls per second (default: a quarter of what the model answers alone)",
    )
    parser.add_argument("--price-per-hour", type=float, default=0.10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        data = Path(work) / "data"
        config = Path(work) / "sw.toml"
        config.write_text(CONFIG.format(price=args.price_per_hour))
        port = free_port()
        log = (Path(work) / "serve.log").open("w")
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "slackwater", "serve", "--port", str(port)),
                *("--data-dir", str(data), "--config", str(config)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    httpx.get(url + "/health", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            result = asyncio.run(measure(url, args))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
            log.close()
        result["ledger"] = ledger(data, config)
        result["flex_window_seconds"] = Settings.load(config).tiers()["flex"].window_seconds
    report(result, args.json)


def report(result: dict[str, Any], as_json: bool) -> None:
    alone, loaded, flex = result["realtime_alone"], result["realtime_loaded"], result["flex"]
    summary = {
        "realtime_per_second": result["realtime_rate"],
        "realtime_alone_p50": percentile(alone, 0.5),
        "realtime_alone_p95": percentile(alone, 0.95),
        "realtime_loaded_p50": percentile(loaded, 0.5),
        "realtime_loaded_p95": percentile(loaded, 0.95),
        "flex_p50": percentile(flex, 0.5),
        "flex_p95": percentile(flex, 0.95),
        "flex_window": result["flex_window_seconds"],
        "flex_per_second": result["flex_per_second"],
        "one_at_a_time_per_second": result["one_at_a_time_per_second"],
        "batch": f"{result['batch_status']} ({result['batch_completed']} lines)",
    }
    costs = {
        row["tier"]: float(row["cost_usd"])
        / max(row["prompt_tokens"] + row["completion_tokens"], 1)
        * 1e6
        for row in result["ledger"]
    }
    if as_json:
        print(json.dumps({"summary": summary, "cost_per_million_tokens": costs}))
        return
    ratio_50 = summary["realtime_loaded_p50"] / summary["realtime_alone_p50"]
    ratio_95 = summary["realtime_loaded_p95"] / summary["realtime_alone_p95"]
    speedup = summary["flex_per_second"] / summary["one_at_a_time_per_second"]
    print(f"real-time calls: {summary['realtime_per_second']:.2f} a second in both phases")
    print(f"{'':34}{'p50 s':>10}{'p95 s':>10}")
    print(
        f"{'real time, alone':34}{summary['realtime_alone_p50']:>10.2f}"
        f"{summary['realtime_alone_p95']:>10.2f}"
    )
    print(
        f"{'real time, under the mixed load':34}{summary['realtime_loaded_p50']:>10.2f}"
        f"{summary['realtime_loaded_p95']:>10.2f}   ratio {ratio_50:.2f}x / {ratio_95:.2f}x"
    )
    print(
        f"{'flex (window ' + str(summary['flex_window']) + ' s)':34}{summary['flex_p50']:>10.2f}"
        f"{summary['flex_p95']:>10.2f}"
    )
    print(
        f"flex throughput {summary['flex_per_second']:.2f} req/s vs one at a time in real time "
        f"{summary['one_at_a_time_per_second']:.2f} req/s: {speedup:.1f}x"
    )
    print(f"batch: {summary['batch']}")
    print("cost per 1M tokens by tier (ledger):")
    for tier, cost in sorted(costs.items()):
        print(f"  {tier:10} ${cost:.4f}")
    print(
        "targets: real time under load <= 1.2x alone; flex >= 3x one at a time; "
        "flex within its window"
    )


if __name__ == "__main__":
    main()
