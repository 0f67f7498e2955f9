"""The Typer app, the options every command group shares, and the consoles."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from slackwater.config import Settings
from slackwater.domain.errors import InvalidRequest

if TYPE_CHECKING:
    from slackwater.ports import Store

T = TypeVar("T")

app = typer.Typer(
    help="slackwater: cost-first batch inference with an OpenAI-compatible Batch API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Piped output keeps whole ids on one line; a terminal gets its own width. What is
# printed is data (ids, answers, error messages): never markup or emoji codes, so that
# a custom_id "[red]" or an answer ":100:" prints as sent.
console = Console(
    soft_wrap=True, width=None if sys.stdout.isatty() else 250, markup=False, emoji=False
)
err_console = Console(stderr=True, soft_wrap=True, highlight=False, markup=False, emoji=False)

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


def with_store(
    config: Path | None, data_dir: Path | None, work: Callable[[Store, Settings], Awaitable[T]]
) -> T:
    """Run `work` on the store the settings name (migrated first), then close it."""
    from slackwater.app import open_store  # the wiring loads lazily: `--help` stays fast

    loaded = settings(config, data_dir=data_dir)

    async def main() -> T:
        store = open_store(loaded)
        try:
            await store.migrate()
            return await work(store, loaded)
        finally:
            await store.close()

    return asyncio.run(main())


def writable(path: Path, what: str = "output") -> Path:
    """`path`, checked before any work: a file that can be written (its folder exists)."""
    if path.is_dir():
        raise InvalidRequest(f"{what} {path} is a directory; name a file")
    folder = path.parent
    if not folder.is_dir():
        raise InvalidRequest(f"{what} {path}: folder {folder} does not exist")
    return path


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
