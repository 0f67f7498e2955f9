"""What does a batch cost against real time, and how close does the planner get to the limit?

Side by side, in one run:
  1. the default local chat model (SmolLM2-135M) on this machine: completion tokens/s
     one request at a time (the realtime way) against full batches;
  2. `slackwater sim` on every shared spot trace, with the measured slowdown of (1) as
     the realtime baseline: cost of realtime, always on-demand, greedy spot, uniform
     progress, slackwater's planner and the offline optimum, with missed deadlines;
  3. the same on several spot pools at once: the zones of one region side by side (a
     job fails over between them), the second zone's spot 10% dearer, against the
     offline optimum over all of them.

    python bench/cost.py [--traces DIR] [--requests 64] [--json]
Targets: slackwater's cost <= 1/6 of realtime; mean <= 1.03x and worst <= 1.08x the
optimum per trace; never worse than greedy by more than 1%; no feasible deadline missed.
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
SPOT = Prices().spot_per_hour
PROMPTS = ["Summarise the log", "Review this function", "Classify the ticket", "Answer briefly"]


def measure_local(requests: int, max_tokens: int, sizes: list[int]) -> dict[str, Any]:
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


def _shown(path: str) -> str:
    return (
        str(Path(path).relative_to(SHARED_TRACES)) if SHARED_TRACES in Path(path).parents else path
    )


def simulate_trace(paths: list[str], slowdown: float) -> dict[str, Any]:
    """One trace, or several side by side as spot pools (each 10% dearer than the last)."""
    pools = [
        replace(trace, spot_prices=[SPOT * Decimal("1.1") ** i] * len(trace))
        for i, trace in enumerate(load_trace(Path(path)) for path in paths)
    ]
    prices = Prices(realtime_slowdown=slowdown)
    comparison = compare(default_workload(pools[0]), pools, prices, list(POLICIES.values()))
    return {
        "trace": " + ".join(_shown(path) for path in paths),
        "feasible": comparison.feasible,
        "jobs": comparison.jobs,
        "cost": {name: str(r.cost) for name, r in comparison.results.items()},
        "missed_feasible": {name: r.missed_feasible for name, r in comparison.results.items()},
    }


def pool_sets(paths: list[str]) -> list[list[str]]:
    """The zones of each region in each trace set, side by side (two or more), for one
    instance type at a time."""
    regions: dict[tuple[str, str, str], list[str]] = {}
    for path in paths:
        zone, _, instance = Path(path).stem.partition("_")  # us-east-1c, v100_1
        regions.setdefault((str(Path(path).parent), zone[:-1], instance), []).append(path)
    return [sorted(zones) for zones in regions.values() if len(zones) > 1]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    names = list(rows[0]["cost"])
    ratios = {
        n: [float(Decimal(r["cost"][n]) / Decimal(r["cost"]["optimum"])) for r in rows]
        for n in names
    }
    totals = {n: sum((Decimal(r["cost"][n]) for r in rows), Decimal(0)) for n in names}
    return {
        "traces": len(rows),
        "batches": sum(r["jobs"] for r in rows),
        "total_cost_usd": {n: str(v.quantize(Decimal("0.01"))) for n, v in totals.items()},
        "mean_ratio_to_optimum": {n: round(sum(v) / len(v), 3) for n, v in ratios.items()},
        "worst_trace_ratio_to_optimum": {n: round(max(v), 3) for n, v in ratios.items()},
        "worse_than_greedy": {
            n: sum(a > g * 1.01 for a, g in zip(v, ratios["greedy"], strict=True))
            for n, v in ratios.items()
        },
        "missed_feasible_deadlines": {n: sum(r["missed_feasible"][n] for r in rows) for n in names},
        "planner_vs_realtime": round(float(totals["slack_reserve"] / totals["realtime"]), 4),
        "per_trace": rows,
    }


def table(title: str, summary: dict[str, Any]) -> None:
    print(f"{title}: {summary['batches']} batches on {summary['traces']} traces")
    print(
        f"   {'policy':<18}{'cost $':>12}{'mean x opt':>12}{'worst':>8}{'>greedy':>9}{'missed':>8}"
    )
    for n, cost in summary["total_cost_usd"].items():
        print(
            f"   {n:<18}{cost:>12}{summary['mean_ratio_to_optimum'][n]:>12.3f}"
            f"{summary['worst_trace_ratio_to_optimum'][n]:>8.3f}"
            f"{summary['worse_than_greedy'][n]:>9}{summary['missed_feasible_deadlines'][n]:>8}"
        )


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
    sets = [[p] for p in paths] + pool_sets(paths)
    with ProcessPoolExecutor(2) as pool:
        rows = list(pool.map(simulate_trace, sets, [local["slowdown"]] * len(sets)))
    single = summarise([r for r in rows if " + " not in r["trace"]])
    multi = summarise([r for r in rows if " + " in r["trace"]])
    if args.json:
        print(json.dumps({"local_model": local, "single_pool": single, "many_pools": multi}))
        return
    print(f"1. local model ({DEFAULT_CHAT_MODEL}, CPU): completion tokens/s")
    print(f"   one request at a time (realtime): {local['one_at_a_time_tokens_per_s']:>10}")
    for size, value in local["batched_tokens_per_s"].items():
        print(f"   full batches of {size:>3}:              {value:>10}")
    print(f"   batches are {local['slowdown']}x the realtime way's throughput")
    print()
    table("2. simulator, one spot pool", single)
    print()
    table("3. simulator, the zones of a region side by side", multi)
    share = single["planner_vs_realtime"]
    print()
    print(
        f"   the planner (slack_reserve) costs {share:.4f} of realtime "
        f"(1/{1 / share:.1f}; target <= 1/6)"
    )
    for name, summary in (("one pool", single), ("several pools", multi)):
        print(
            f"   {name}: the planner is {summary['mean_ratio_to_optimum']['slack_reserve']:.3f}x "
            f"the optimum on average (target <= 1.03), "
            f"{summary['worst_trace_ratio_to_optimum']['slack_reserve']:.3f}x at worst (<= 1.08), "
            f"worse than greedy on {summary['worse_than_greedy']['slack_reserve']}, "
            f"feasible deadlines missed: {summary['missed_feasible_deadlines']['slack_reserve']}"
        )


if __name__ == "__main__":
    main()
