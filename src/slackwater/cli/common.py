"""The Typer app, the options every command group shares, and the consoles."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from slackwater.config import Settings

app = typer.Typer(
    help="slackwater: cost-first batch inference with an OpenAI-compatible Batch API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Piped output keeps whole ids on one line; a terminal gets its own width.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err_console = Console(stderr=True, soft_wrap=True, highlight=False)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (or SLACKWATER_CONFIG).", show_default=False
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where the database and files live [default: ./.slackwater]."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def settings(config: Path | None, **overrides: Any) -> Settings:
    return Settings.load(config, **overrides)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
