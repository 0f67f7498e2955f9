"""The `slackwater` command line: one module per command group, all on one Typer app.

    server    serve, worker, run-batch
    routing   route, quote, router train
    capacity  sim, report
    client    batches ..., files ... (over HTTP, against a running server)
    models    models, models make-tiny
    keys      keys ...

Commands build what they run through `slackwater.app`, never directly.
"""

from __future__ import annotations

import sys

import httpx

from slackwater import __version__
from slackwater.cli.common import app, err_console
from slackwater.domain.errors import SlackwaterError

# Commands are listed in `slackwater --help` in the order they are registered.
# isort: off
from slackwater.cli import server, routing, capacity, client, models, keys
# isort: on

__all__ = ["app", "capacity", "client", "keys", "main", "models", "routing", "server"]


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def main() -> None:
    try:
        app()
    except SlackwaterError as exc:
        err_console.print(f"error: {exc.message}", highlight=False)
        sys.exit(1)
    except httpx.HTTPError as exc:
        err_console.print(f"error: cannot reach the server: {exc}", highlight=False)
        sys.exit(1)
