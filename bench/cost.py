"""What does a batch cost against real time, and how close does the planner get to the limit?

Side by side, in one run:
  1. the local chat model (tiny-llama, built here) on this machine: completion tokens/s
     one request at a time (the realtime way) against full batches;
  2. `slackwater sim` on every shared spot trace, with the measured slowdown of (1) as
     the realtime baseline: cost of realtime, always on-demand, greedy spot, uniform
     progress, slackwater's planner and the offline optimum, with missed deadlines.

    python bench/cost.py [--traces DIR] [--requests 64] [--json]
Targets: slackwater's cost <= 1/6 of realtime; <= 1.10x the optimum; no feasible
deadline missed.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from slackwater.config import DEFAULT_CHAT_MODEL, Settings
from slackwater.domain.batch import Endpoint
from slackwater.feeds.trace import load_trace
from slackwater.policy.planner import POLICIES
from slackwater.policy.simulate import Prices, compare, default_workload

SHARED_TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "spot-traces"
PROMPTS = ["Summarise the log", "Review this function", "Classify the ticket", "Answer briefly"]


def measure_local(requests: int, max_tokens: int, sizes: list[int]) -> dict[str, Any]:
    from slackwater.engines.tiny_llama import build_tiny_llama
    from slackwater.engines.transformers import TransformersEngine

    rng = random.Random(7)
    bodies = [
        {
            "model": DEFAULT_CHAT_MODEL,
            "messages": [{"role": "user", "content": f"{rng.choice(PROMPTS)} #{i}"}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        for i in range(requests)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(data_dir=Path(tmp))
        build_tiny_llama(Path(tmp) / "models" / "tiny-llama")
        model = next(m for m in settings.catalog() if m.name == DEFAULT_CHAT_MODEL)
        engine = TransformersEngine(replace(model, options={**model.options, "data_dir": tmp}))
        engine.run_sync(Endpoint.CHAT.value, bodies[:4])  # load and warm up

        def rate(size: int) -> float:
            tokens, start = 0, time.perf_counter()
            for i in range(0, len(bodies), size):
                for outcome in engine.run_sync(Endpoint.CHAT.value, bodies[i : i + size]):
                    assert outcome.ok, outcome.body
                    tokens += outcome.usage.completion_tokens
            return tokens / (time.perf_counter() - start)

        one = max(rate(1) for _ in range(2))
        batched = {size: max(rate(size) for _ in range(2)) for size in sizes}
    best = max(batched.values())
    return {
        "one_at_a_time_tokens_per_s": round(one, 1),
        "batched_tokens_per_s": {str(k): round(v, 1) for k, v in batched.items()},
        "slowdown": round(best / one, 2),
    }


def simulate_trace(path: str, slowdown: float) -> dict[str, Any]:
    trace = load_trace(Path(path))
    prices = Prices(realtime_slowdown=slowdown)
    comparison = compare(default_workload(trace), trace, prices, list(POLICIES.values()))
    return {
        "trace": str(Path(path).relative_to(SHARED_TRACES))
        if SHARED_TRACES in Path(path).parents
        else path,
        "feasible": comparison.feasible,
        "jobs": comparison.jobs,
        "cost": {name: str(r.cost) for name, r in comparison.results.items()},
        "missed_feasible": {name: r.missed_feasible for name, r in comparison.results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", type=Path, default=SHARED_TRACES)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--sizes", default="16,32,64")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    local = measure_local(args.requests, args.max_tokens, [int(s) for s in args.sizes.split(",")])
    paths = sorted(str(p) for p in args.traces.rglob("*.json"))
    with ProcessPoolExecutor(2) as pool:
        rows = list(pool.map(simulate_trace, paths, [local["slowdown"]] * len(paths)))
    names = list(rows[0]["cost"])
    totals = {n: sum((Decimal(r["cost"][n]) for r in rows), Decimal(0)) for n in names}
    worst = {
        n: max(float(Decimal(r["cost"][n]) / Decimal(r["cost"]["optimum"])) for r in rows)
        for n in names
    }
    missed = {n: sum(r["missed_feasible"][n] for r in rows) for n in names}
    summary = {
        "local_model": local,
        "traces": len(rows),
        "batches": sum(r["jobs"] for r in rows),
        "total_cost_usd": {n: str(v.quantize(Decimal("0.01"))) for n, v in totals.items()},
        "ratio_to_optimum": {n: round(float(v / totals["optimum"]), 3) for n, v in totals.items()},
        "worst_trace_ratio_to_optimum": {n: round(v, 3) for n, v in worst.items()},
        "missed_feasible_deadlines": missed,
        "planner_vs_realtime": round(float(totals["slack_reserve"] / totals["realtime"]), 4),
        "per_trace": rows,
    }
    if args.json:
        print(json.dumps(summary))
        return
    print("1. local model (tiny-llama, CPU): completion tokens/s")
    print(f"   one request at a time (realtime): {local['one_at_a_time_tokens_per_s']:>10}")
    for size, value in local["batched_tokens_per_s"].items():
        print(f"   full batches of {size:>3}:              {value:>10}")
    print(f"   batches are {local['slowdown']}x the realtime way's throughput")
    print()
    print(f"2. simulator: {summary['batches']} batches on {len(rows)} shared spot traces")
    print(f"   {'policy':<18}{'cost $':>12}{'x optimum':>11}{'worst trace':>13}{'missed':>8}")
    for n in names:
        print(
            f"   {n:<18}{summary['total_cost_usd'][n]:>12}{summary['ratio_to_optimum'][n]:>11.3f}"
            f"{summary['worst_trace_ratio_to_optimum'][n]:>13.3f}{missed[n]:>8}"
        )
    share = summary["planner_vs_realtime"]
    print()
    print(
        f"   the planner (slack_reserve) costs {share:.4f} of realtime "
        f"(1/{1 / share:.1f}; target <= 1/6)"
    )
    print(
        f"   the planner is {summary['ratio_to_optimum']['slack_reserve']:.3f}x the offline optimum"
        " (target <= 1.10x); feasible deadlines missed: "
        f"{missed['slack_reserve']} (target 0)"
    )


if __name__ == "__main__":
    main()
