"""`slackwater sim`: replay a workload on a spot trace through the planner's policies."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from slackwater.cli import JsonOpt, app, console
from slackwater.domain.errors import ConfigError
from slackwater.feeds.trace import load_trace
from slackwater.policy.planner import POLICIES, policy
from slackwater.policy.simulate import Comparison, Prices, compare, default_workload, parse_workload


def comparison_json(comparison: Comparison, trace: str) -> dict[str, Any]:
    return {
        "trace": trace,
        "jobs": comparison.jobs,
        "feasible_jobs": comparison.feasible,
        "policies": {
            name: {
                "cost_usd": str(result.cost.quantize(Decimal("0.01"))),
                "missed_deadlines": result.missed,
                "missed_feasible_deadlines": result.missed_feasible,
                "ratio_to_optimum": (
                    round(ratio, 4) if (ratio := comparison.ratio(name)) is not None else None
                ),
            }
            for name, result in comparison.results.items()
        },
    }


def comparison_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"{report['trace']}: {report['jobs']} batches")
    for column in ("policy", "cost $", "missed deadlines", "x optimum"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for name, row in report["policies"].items():
        ratio = row["ratio_to_optimum"]
        table.add_row(
            name,
            row["cost_usd"],
            str(row["missed_deadlines"]),
            f"{ratio:.3f}" if ratio is not None else "-",
        )
    return table


@app.command()
def sim(
    trace: Annotated[Path, typer.Option(help="Spot availability trace (shared traces' format).")],
    workload: Annotated[
        Path | None,
        typer.Option(help='Workload JSON: {"jobs": [{arrival_hours, work_hours, window_hours}]}.'),
    ] = None,
    policies: Annotated[
        list[str] | None,
        typer.Option(
            "--policy", help=f"Policy to run (repeat); default all: {', '.join(POLICIES)}."
        ),
    ] = None,
    price_trace: Annotated[
        Path | None, typer.Option(help="Spot price trace ($/hour per tick), same format.")
    ] = None,
    spot_price: Annotated[str, typer.Option(help="Spot $/hour without a price trace.")] = "0.918",
    on_demand_price: Annotated[str, typer.Option(help="On-demand $/hour.")] = "3.06",
    restart_seconds: Annotated[
        float, typer.Option(help="Start an instance, load the model.")
    ] = 300.0,
    max_spot_price: Annotated[
        str | None, typer.Option(help="Hold while spot costs more (if slack allows).")
    ] = None,
    provider_price: Annotated[
        str | None,
        typer.Option(help="A provider batch tier, $ per instance-hour of work; default none."),
    ] = None,
    realtime_slowdown: Annotated[
        float, typer.Option(help="Realtime (one request at a time) vs batch throughput.")
    ] = 6.0,
    json_out: JsonOpt = False,
) -> None:
    """Replay a workload against a spot trace: cost and missed deadlines per policy.

    Without --workload, the default runs: 40 batches spread over the trace, windows of
    12, 24 or 48 hours, each needing 20-70% of its window on one instance (seed 7).
    Each policy is compared with the offline optimum computed exactly from the trace.
    """
    try:
        loaded = load_trace(trace, price_trace)
        jobs = (
            parse_workload(json.loads(workload.read_text()), str(workload))
            if workload
            else default_workload(loaded)
        )
        chosen = [policy(name) for name in (policies or list(POLICIES))]
    except (ConfigError, ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc)) from None
    prices = Prices(
        spot_per_hour=Decimal(spot_price),
        on_demand_per_hour=Decimal(on_demand_price),
        restart_seconds=restart_seconds,
        realtime_slowdown=realtime_slowdown,
        max_spot_price=Decimal(max_spot_price) if max_spot_price else None,
        provider_per_hour=Decimal(provider_price) if provider_price else None,
    )
    report = comparison_json(compare(jobs, loaded, prices, chosen), str(trace))
    if json_out:
        console.print_json(data=report)
    else:
        console.print(comparison_table(report))
