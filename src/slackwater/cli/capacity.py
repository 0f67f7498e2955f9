"""`slackwater sim` (a workload replayed on a spot trace through the planner's policies)
and `slackwater report` (the ledger: cost, savings and deadlines)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from slackwater.api.schemas import cost_json, usd
from slackwater.cli.common import ConfigOpt, DataDirOpt, JsonOpt, app, console, settings
from slackwater.config import Settings
from slackwater.domain.batch import BatchStatus
from slackwater.domain.clock import utcnow
from slackwater.domain.errors import ConfigError
from slackwater.policy.planner import POLICIES, policy
from slackwater.policy.simulate import Comparison, Prices, compare, default_workload, parse_workload
from slackwater.ports import LEDGER_GROUPS, LedgerRow


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
    traces: Annotated[
        list[Path],
        typer.Option(
            "--trace",
            help="Spot availability trace (shared traces' format); repeat for several "
            "spot pools side by side (the same tick).",
        ),
    ],
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
    price_traces: Annotated[
        list[Path] | None,
        typer.Option(
            "--price-trace",
            help="Spot price trace ($/hour per tick), same format; one per --trace, in order.",
        ),
    ] = None,
    spot_prices: Annotated[
        list[str] | None,
        typer.Option(
            "--spot-price",
            help="Spot $/hour without a price trace: one for all, or one per --trace "
            "[default: 0.918].",
        ),
    ] = None,
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
    """Replay a workload against spot traces: cost and missed deadlines per policy.

    Without --workload, the default runs: 40 batches spread over the trace, windows of
    12, 24 or 48 hours, each needing 20-70% of its window on one instance (seed 7).
    With several --trace, each is a spot pool with its own price: a job runs on the
    cheapest pool with spot and fails over to another when preempted. Each policy is
    compared with the offline optimum computed exactly from the traces.
    """
    from slackwater.app import spot_traces

    try:
        pools = spot_traces(traces, price_traces or [], spot_prices or [])
        jobs = (
            parse_workload(json.loads(workload.read_text()), str(workload))
            if workload
            else default_workload(pools[0])
        )
        chosen = [policy(name) for name in (policies or list(POLICIES))]
        prices = Prices(
            on_demand_per_hour=Decimal(on_demand_price),
            restart_seconds=restart_seconds,
            realtime_slowdown=realtime_slowdown,
            max_spot_price=Decimal(max_spot_price) if max_spot_price else None,
            provider_per_hour=Decimal(provider_price) if provider_price else None,
        )
        report = comparison_json(
            compare(jobs, pools, prices, chosen), " + ".join(str(t) for t in traces)
        )
    except (ConfigError, ValueError, OSError, ArithmeticError) as exc:
        raise typer.BadParameter(str(exc)) from None
    if json_out:
        console.print_json(data=report)
    else:
        console.print(comparison_table(report))


@app.command()
def report(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    by: Annotated[
        str,
        typer.Option(
            help="Group by batch, project, pool, model, engine, tier, day (UTC) or session."
        ),
    ] = "batch",
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    days: Annotated[
        float | None, typer.Option(help="Only requests finished in the last N days.")
    ] = None,
    batch: Annotated[
        str | None, typer.Option(help="List this batch's requests, one ledger line each.")
    ] = None,
    limit: Annotated[int, typer.Option(help="With --batch: at most this many lines.")] = 100,
    json_out: JsonOpt = False,
) -> None:
    """The ledger: what requests cost where they ran, against real time, and deadlines met.

    Reads the store the config points at (run it where the server runs).
    """
    from slackwater.app import open_store

    groups = [*LEDGER_GROUPS, "day", "session"]
    if by not in groups:
        raise typer.BadParameter(f"--by must be one of {', '.join(groups)}")
    loaded = settings(config, data_dir=data_dir)
    if batch is not None:
        _entries(loaded, batch, limit, json_out)
        return
    since = utcnow() - timedelta(days=days) if days is not None else None

    async def read() -> tuple[list[LedgerRow], dict[str, int]]:
        store = open_store(loaded)
        try:
            await store.migrate()
            return await store.ledger(by, project, since), await store.batch_outcomes(project)
        finally:
            await store.close()

    rows, outcomes = asyncio.run(read())
    cost = sum((r.cost for r in rows), Decimal(0))
    realtime = sum((r.realtime_cost for r in rows), Decimal(0))
    data: dict[str, Any] = {
        "by": by,
        "rows": [
            {
                by: r.key,
                "requests": r.requests,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "compute_seconds": round(r.compute_seconds, 3),
                **cost_json(r.cost, r.realtime_cost),
            }
            for r in rows
        ],
        "total": {"requests": sum(r.requests for r in rows), **cost_json(cost, realtime)},
        "deadlines": {
            "met": outcomes.get("completed", 0),
            "missed": outcomes.get("expired", 0),
            "cancelled": outcomes.get("cancelled", 0),
            "failed": outcomes.get("failed", 0),
            "open": sum(n for s, n in outcomes.items() if not BatchStatus(s).is_terminal),
        },
    }
    if json_out:
        console.print_json(data=data)
        return
    table = Table(title=f"ledger by {by}")
    columns = (
        by,
        "requests",
        "tokens in",
        "tokens out",
        "compute s",
        "cost $",
        "realtime $",
        "saving $",
        "saving",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == by else "right")
    for r in rows:
        table.add_row(
            r.key,
            str(r.requests),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            f"{r.compute_seconds:.1f}",
            usd(r.cost),
            usd(r.realtime_cost),
            usd(r.saving),
            f"{r.saving / r.realtime_cost:.0%}" if r.realtime_cost else "-",
        )
    console.print(table)
    total = data["total"]
    console.print(
        f"total: {total['requests']} requests, cost ${total['cost_usd']}, "
        f"realtime ${total['realtime_cost_usd']}, saving ${total['saving_usd']}"
    )
    d = data["deadlines"]
    console.print(
        f"batches: {d['met']} met their deadline, {d['missed']} missed (expired), "
        f"{d['cancelled']} cancelled, {d['failed']} failed, {d['open']} open"
    )


def _entries(loaded: Settings, batch_id: str, limit: int, json_out: bool) -> None:
    from slackwater.app import open_store

    async def read() -> list[Any]:
        store = open_store(loaded)
        try:
            await store.migrate()
            await store.get_batch(None, batch_id)  # NotFound names it
            return list(await store.ledger_entries(batch_id, limit))
        finally:
            await store.close()

    entries = asyncio.run(read())
    rows = [
        {
            "custom_id": e.custom_id,
            "model": e.model,
            "engine": e.engine,
            "pool": e.pool,
            "prompt_tokens": e.prompt_tokens,
            "completion_tokens": e.completion_tokens,
            "compute_seconds": round(e.compute_seconds, 6),
            "price": e.price,
            **cost_json(e.cost, e.realtime_cost),
        }
        for e in entries
    ]
    if json_out:
        console.print_json(data={"batch": batch_id, "requests": rows})
        return
    table = Table(title=f"ledger of {batch_id}")
    columns = (
        "custom_id",
        "model",
        "engine",
        "pool",
        "in",
        "out",
        "compute s",
        "price",
        "cost $",
        "realtime $",
    )
    for column in columns:
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["custom_id"],
            r["model"],
            r["engine"] or "-",
            r["pool"] or "-",
            str(r["prompt_tokens"]),
            str(r["completion_tokens"]),
            f"{r['compute_seconds']:.4f}",
            r["price"] or "-",
            r["cost_usd"],
            r["realtime_cost_usd"],
        )
    console.print(table)
