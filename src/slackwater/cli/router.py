"""`slackwater router train`: the learned router's data, from labelled outcomes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from slackwater.cli import ConfigOpt, DataDirOpt, _settings, app, console
from slackwater.domain.errors import ConfigError
from slackwater.domain.model import Catalog
from slackwater.policy.quality import LearnedRouter
from slackwater.runtime.learned import read_outcomes, save_router

router_app = typer.Typer(help="The learned router.", no_args_is_help=True)
app.add_typer(router_app, name="router")


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

    settings = _settings(config, data_dir=data_dir)
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
        embed = router_embedder(settings, Catalog(settings.catalog()))
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    vectors = embed(labelled.prompts)
    router = LearnedRouter.fit(names, vectors, labelled.prompts, labelled.outcomes)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_router(out, router, vectors, labelled.outcomes, settings.router_max_tokens)
    rates = np.nanmean(labelled.outcomes, axis=0)
    console.print(f"{len(labelled.prompts)} prompts from {data} -> {out}")
    for name, rate in zip(names, rates, strict=True):
        role = " (reference)" if name == names[router.reference] else ""
        console.print(f"  {name}: answered {rate:.1%} well{role}")
