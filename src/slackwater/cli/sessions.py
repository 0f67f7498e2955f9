"""`slackwater agents worker` (resume an agents app's sessions) and `slackwater sessions`
(start, get, list, send an event, cancel, fork), on the store the config names."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from slackwater.cli.common import ConfigOpt, DataDirOpt, app, console, settings, setup_logging
from slackwater.domain.errors import InvalidRequest

T = TypeVar("T")
agents_app = typer.Typer(help="Run agent sessions: a worker that resumes them.")
sessions_app = typer.Typer(
    help="Agent sessions: start, get, list, send events, cancel, fork.", no_args_is_help=True
)
app.add_typer(agents_app, name="agents")
app.add_typer(sessions_app, name="sessions")
AppOpt = Annotated[
    str | None,
    typer.Option("--app", help='The agents, as "module:attribute" [default: agents_app].'),
]
ProjectOpt = Annotated[str, typer.Option(help="The project the session belongs to.")]


def _with_runner(
    config: Path | None,
    data_dir: Path | None,
    agents: str | None,
    work: Callable[..., Awaitable[T]],
) -> T:
    from slackwater.app import open_store, session_runner
    from slackwater.domain.clock import utcnow
    from slackwater.runtime.calls import CallQueue

    loaded = settings(config, data_dir=data_dir)
    if agents is not None:
        loaded = loaded.model_copy(update={"agents_app": agents})

    async def main() -> T:
        store = open_store(loaded)
        try:
            await store.migrate()
            calls = CallQueue(store, utcnow)
            try:
                return await work(session_runner(loaded, store, calls), store)
            finally:
                await calls.close()
        finally:
            await store.close()

    return asyncio.run(main())


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{what} is not JSON: {exc}", param=what) from None


def _show(value: Any) -> None:
    console.print_json(json.dumps(value))


@agents_app.command("worker")
def worker(agents: AppOpt = None, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Resume the app's due sessions until stopped (SIGTERM, Ctrl-C). Their inferences
    run on the server's workers; a session waiting holds nothing here."""
    setup_logging()

    async def run(runner: Any, _: Any) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await runner.run(stopping)

    _with_runner(config, data_dir, agents, run)


@sessions_app.command("start")
def start(
    agent: Annotated[str, typer.Argument(help="The agent's name.")],
    arguments: Annotated[str, typer.Option("--arguments", help="Its arguments, as JSON.")] = "{}",
    agents: AppOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print its id only.")] = False,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Start a session (queued: an agents worker, or a server with agents_app, runs it)."""
    from slackwater.api.sessions import session_json

    given = _json_arg(arguments, "arguments")

    async def run(runner: Any, _: Any) -> None:
        session = await runner.start(project, agent, given)
        if quiet:
            print(session.id)
        else:
            _show(session_json(session))

    _with_runner(config, data_dir, agents, run)


@sessions_app.command("get")
def get(
    session_id: str,
    journal: Annotated[bool, typer.Option(help="Show its journal too.")] = False,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """A session: its status, where it waits, its result; with --journal, its journal."""
    from slackwater.api.sessions import entry_json, session_json

    async def run(runner: Any, store: Any) -> None:
        found = await store.get_session(project, session_id)
        shown = session_json(found)
        shown["cost"] = (await runner.cost(found)).to_dict()
        if journal:
            shown["journal"] = [entry_json(e) for e in await store.journal(session_id)]
        _show(shown)

    _with_runner(config, data_dir, None, run)


@sessions_app.command("wait")
def wait(
    session_id: str,
    event: Annotated[
        str | None,
        typer.Option(help="Wait until the session waits for this event, not its end."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.")] = 3600,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Wait until the session ends (or, with --event, waits for that event), then show
    it. Exits 1 unless it completed (or waits for the event)."""
    from slackwater.api.sessions import session_json
    from slackwater.domain.sessions import SessionStatus

    async def run(_: Any, store: Any) -> bool:
        limit = asyncio.get_running_loop().time() + timeout
        while True:
            session = await store.get_session(project, session_id)
            if event is None:
                reached = session.status is SessionStatus.COMPLETED
            else:
                reached = session.waiting is not None and session.waiting.event == event
            if reached or session.status.ended or asyncio.get_running_loop().time() > limit:
                _show(session_json(session))
                return reached
            await asyncio.sleep(0.5)

    if not _with_runner(config, data_dir, None, run):
        raise typer.Exit(1)


@sessions_app.command("list")
def list_sessions(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The project's sessions, newest first."""
    from slackwater.api.sessions import session_json

    async def run(_: Any, store: Any) -> None:
        page = await store.list_sessions(project, limit=limit, after=None)
        _show([session_json(s) for s in page.items])

    _with_runner(config, data_dir, None, run)


@sessions_app.command("send")
def send(
    session_id: str,
    key: str,
    payload: Annotated[str | None, typer.Option(help="The event's payload, as JSON.")] = None,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Send an event (kept until the session's `wait_for(key)` takes it)."""
    given = _json_arg(payload, "payload")

    async def run(runner: Any, _: Any) -> None:
        await runner.send(project, session_id, key, given)

    _with_runner(config, data_dir, None, run)


@sessions_app.command("cancel")
def cancel(
    session_id: str,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Cancel a session that has not ended."""
    from slackwater.api.sessions import session_json
    from slackwater.domain.clock import utcnow

    async def run(_: Any, store: Any) -> None:
        _show(session_json(await store.cancel_session(project, session_id, utcnow())))

    _with_runner(config, data_dir, None, run)


@sessions_app.command("fork")
def fork(
    session_id: str,
    upto: Annotated[int, typer.Option(help="Journal entries the fork replays.")],
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """A new session from the first UPTO entries of this one's journal."""
    from slackwater.api.sessions import session_json

    async def run(runner: Any, _: Any) -> None:
        _show(session_json(await runner.fork(project, session_id, upto)))

    _with_runner(config, data_dir, None, run)
