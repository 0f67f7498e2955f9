"""The `slackwater` command line: one module per command group, all on one Typer app.

    server    serve, worker, run-batch
    routing   route, quote, router train
    capacity  sim, report
    client    batches ..., files ... (over HTTP, against a running server)
    models    models, models make-tiny
    keys      keys ...
    webhooks  webhooks ... (endpoints, their secrets)
    sessions  agents worker, sessions ... (durable agent runs)
    predictions  predictions run|resume|jobs|get (classical models over tables)

Commands build what they run through `slackwater.app`, never directly.
"""

from __future__ import annotations

import sys
import traceback

import httpx

from slackwater import __version__
from slackwater.cli.common import app, err_console
from slackwater.domain.errors import SlackwaterError

# Commands are listed in `slackwater --help` in the order they are registered.
# isort: off
from slackwater.cli import server, routing, capacity, client, models, keys, webhooks, sessions
from slackwater.cli import predictions
# isort: on

__all__ = [
    "app",
    "capacity",
    "client",
    "keys",
    "main",
    "models",
    "predictions",
    "routing",
    "server",
    "sessions",
    "webhooks",
]


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def main() -> None:
    """Every failure is one line on stderr and a non-zero exit; `--debug` (anywhere on
    the command line) shows the traceback as well."""
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # the one place every failure is turned into one line
        if debug:
            traceback.print_exc()
        err_console.print(f"error: {describe(exc)}")
        if not debug and not isinstance(exc, SlackwaterError | httpx.HTTPError | OSError):
            err_console.print("(an unexpected error: run again with --debug for the traceback)")
        sys.exit(1)


def describe(exc: BaseException) -> str:
    """What went wrong, and where, in one line."""
    if isinstance(exc, SlackwaterError):
        return exc.message
    if isinstance(exc, httpx.RequestError):
        where = exc.request.url if exc.request is not None else "the server"
        return f"cannot reach {where}: {exc}"
    if isinstance(exc, httpx.HTTPError):
        return f"HTTP error: {exc}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}"
    return f"{type(exc).__name__}: {exc}"
