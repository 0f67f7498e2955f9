"""Routing and pricing before anything runs: `route`, `quote`, and `router train`."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from slackwater.cli.common import (
    ConfigOpt,
    DataDirOpt,
    JsonOpt,
    app,
    console,
    err_console,
    settings,
)
from slackwater.domain.batch import Endpoint
from slackwater.domain.bodies import EXTENSION
from slackwater.domain.errors import ConfigError, InvalidRequest
from slackwater.domain.model import Catalog
from slackwater.policy.quality import LearnedRouter
from slackwater.runtime.learned import read_outcomes, save_router

router_app = typer.Typer(help="The learned router.", no_args_is_help=True)
app.add_typer(router_app, name="router")


@app.command("route")
def route_command(
    prompt: Annotated[str, typer.Argument(help="The prompt (a user message).")],
    max_tokens: Annotated[int, typer.Option(help="Answer length to plan for.")] = 256,
    task: Annotated[str | None, typer.Option(help="Task category (quality scores).")] = None,
    min_quality: Annotated[float | None, typer.Option(help="Lowest acceptable quality.")] = None,
    max_quality_drop: Annotated[
        float | None,
        typer.Option(help="How far under the best model's predicted quality a cheaper one may be."),
    ] = None,
    max_price: Annotated[
        str | None, typer.Option(help="Highest USD per million output tokens.")
    ] = None,
    feature: Annotated[
        list[str] | None, typer.Option(help="Required feature (json_schema, tools).")
    ] = None,
    route: Annotated[
        str, typer.Option(help="A named route from the config instead of auto.")
    ] = "auto",
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show which model a request with model "auto" would run on, and why.

    Uses the server's router: named routes, tokenizers and the learned router
    (`router_data`) included.
    """
    from slackwater.app import router_for

    if max_price is not None:
        try:
            Decimal(max_price)
        except InvalidOperation:
            raise InvalidRequest(f"--max-price {max_price!r} is not a number") from None
    loaded = settings(config)
    router = router_for(loaded, Catalog(loaded.catalog()))
    if router.named(route) is None:
        raise InvalidRequest(f"no route named {route!r} in the config")
    given = {
        "task": task,
        "min_quality": min_quality,
        "max_quality_drop": max_quality_drop,
        "max_price": max_price,
        "features": feature or None,
    }
    body = {
        "model": route,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        EXTENSION: {k: v for k, v in given.items() if v is not None},
    }
    record = router.resolve_one(Endpoint.CHAT.value, body).route.to_dict()
    if json_out:
        console.print_json(json.dumps(record))
        return
    console.print(f"model: {record['model']}  ({record['reason']})")
    console.print(f"expected cost: ${record['expected_cost_usd']} (batch tier)")
    console.print(f"escalation ladder: {' -> '.join(record['ladder'])}")
    for name, why in record["passed_over"].items():
        console.print(f"  passed over {name}: {why}")
    for name, chance in record.get("predicted_quality", {}).items():
        console.print(f"  learned router: {name} answers well with p = {chance}")


@app.command()
def quote(
    input: Annotated[Path, typer.Argument(help="Batch input JSONL (OpenAI format).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Price a batch file per model and tier before it runs (no engine calls)."""
    from slackwater.app import token_counters
    from slackwater.runtime.quote import by_model, quote_file

    if not input.is_file():
        raise InvalidRequest(f"input file {input} does not exist")
    loaded = settings(config, data_dir=data_dir)
    catalog = Catalog(loaded.catalog())
    result = quote_file(input, catalog, token_counters(loaded, catalog))
    for error in result.errors:
        err_console.print(f"{input}:{error.line}: {error.message} (not priced)")
    data = by_model(result)
    if json_out:
        console.print_json(json.dumps({"endpoint": result.endpoint, "models": data}))
        return
    table = Table(
        "model", "requests", "prompt tokens", "max output tokens", "realtime $", "batch $"
    )
    for name, row in data.items():
        mark = " (est.)" if row["tokens_estimated"] else ""
        table.add_row(
            name,
            str(row["requests"]),
            f"{row['prompt_tokens']}{mark}",
            str(row["max_output_tokens"]),
            row["cost_usd"]["realtime"],
            row["cost_usd"]["batch"],
        )
    console.print(table)


@router_app.command("train")
def train(
    data: Annotated[Path, typer.Option(help="Folder of CSVs: prompt, then True/False per model.")],
    out: Annotated[Path, typer.Option(help="Where to write the router (.npz).")],
    rename: Annotated[
        list[str] | None,
        typer.Option("--model", help="OUR_MODEL=CSV_COLUMN: a column's name in the catalog."),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Embed labelled prompts with the local embedding model, fit the learned router on
    them and save it.

    Point the `router_data` setting at the file: lines routed by "auto" then get each
    model's predicted chance of success, learned from similar labelled prompts.
    """
    from slackwater.app import router_embedder

    loaded = settings(config, data_dir=data_dir)
    try:
        labelled = read_outcomes(data)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    names = list(labelled.models)
    for pair in rename or []:
        ours, _, column = pair.partition("=")
        if column not in names:
            raise typer.BadParameter(f"--model {pair}: no column {column!r} (columns: {names})")
        names[names.index(column)] = ours
    try:
        embed = router_embedder(loaded, Catalog(loaded.catalog()))
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    vectors = embed(labelled.prompts)
    router = LearnedRouter.fit(names, vectors, labelled.prompts, labelled.outcomes)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_router(out, router, vectors, labelled.outcomes, loaded.router_max_tokens)
    rates: Any = np.nanmean(labelled.outcomes, axis=0)
    console.print(f"{len(labelled.prompts)} prompts from {data} -> {out}")
    for name, rate in zip(names, rates, strict=True):
        role = " (reference)" if name == names[router.reference] else ""
        console.print(f"  {name}: answered {rate:.1%} well{role}")
