"""`slackwater models`: the configured models, and the tiny local model for trying it out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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

models_app = typer.Typer(help="The configured models.", invoke_without_command=True)
app.add_typer(models_app, name="models")


@models_app.callback()
def models(
    ctx: typer.Context,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the configured models."""
    if ctx.invoked_subcommand:
        return
    loaded = settings(config, data_dir=data_dir)
    rows: list[dict[str, Any]] = [
        {
            "id": m.name,
            "engine": m.engine,
            "endpoints": sorted(e.value for e in m.endpoints),
            "max_batch_size": m.max_batch_size,
            "aliases": list(m.aliases),
        }
        for m in loaded.catalog()
    ]
    if json_out:
        console.print_json(json.dumps(rows))
        return
    table = Table("model", "engine", "endpoints", "batch size", "aliases")
    for row in rows:
        table.add_row(
            row["id"],
            row["engine"],
            " ".join(row["endpoints"]),
            str(row["max_batch_size"]),
            " ".join(row["aliases"]),
        )
    console.print(table)


@models_app.command("make-tiny")
def make_tiny(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    path: Annotated[
        Path | None, typer.Option(help="Target directory [default: the tiny-llama model's path].")
    ] = None,
) -> None:
    """Build the tiny random-weight Llama the default config serves as `tiny-llama`."""
    from slackwater.app import make_tiny_model

    built = make_tiny_model(settings(config, data_dir=data_dir), path)
    err_console.print(f"model ready in {built}")
