"""Server-side commands: `serve`, `worker` and the offline `run-batch`."""

from __future__ import annotations

import asyncio
import signal
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from slackwater.cli.common import (
    ConfigOpt,
    DataDirOpt,
    app,
    err_console,
    settings,
    setup_logging,
    writable,
)
from slackwater.config import Settings
from slackwater.domain.batch import BatchStatus
from slackwater.domain.errors import InvalidRequest, SlackwaterError
from slackwater.runtime.offline import OFFLINE_LEASE_SIZE, exclusive
from slackwater.runtime.process import exit_after, tune_collector


@app.command()
def serve(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to bind [default: 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8000].")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Workers inside the server (0: only separate `worker`s).")
    ] = None,
) -> None:
    """Run the API server (with a worker inside, unless --workers 0).

    SIGTERM stops it within `drain_seconds`: in-flight calls and the chunk in hand get
    that long, then what is unfinished goes back to the queue.
    """
    from slackwater.api.server import serve as serve_http
    from slackwater.app import build

    loaded = settings(config, data_dir=data_dir, host=host, port=port)
    setup_logging()
    services = build(loaded, workers=workers)
    tune_collector()
    serve_http(services, loaded.host, loaded.port, loaded.drain_seconds)


@app.command()
def worker(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    models: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Only run these models (repeatable).")
    ] = None,
    pool: Annotated[
        str | None,
        typer.Option(help="The configured pool this worker runs on [default: the pool setting]."),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            help="Run the engines as actors on a Ray cluster: auto (the cluster this machine "
            "is in), its address, or local (start one here). Needs slackwater[ray]."
        ),
    ] = None,
    chunks: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Chunks to run at once, sharing the engines: 2 keeps an engine that batches "
            "continuously (vllm, http) busy while a chunk is recorded and the next leased "
            "[default: 1; with --ray, one per actor the models may have].",
        ),
    ] = None,
) -> None:
    """Run a worker against the same store as a server.

    SIGTERM is a preemption notice: the worker leases nothing more, finishes the chunk in
    hand if it can within `drain_seconds` (AWS gives two minutes), else gives the rest
    back to the queue. Workers on spot and on-demand pools lease what the planner
    places there. With --ray, it leases a chunk per actor its models may have (their
    `[models.ray]` max_actors) and runs them on the cluster.
    """
    from slackwater.app import build, for_ray, join_ray, ray_workers

    loaded = settings(config, data_dir=data_dir, pool=pool)
    if ray is not None:
        loaded = for_ray(loaded, models)
    setup_logging()

    async def main() -> None:
        if ray is not None:
            join_ray(ray)
        count = chunks or (ray_workers(loaded, models) if ray is not None else 1)
        services = build(
            loaded, monitor=False, workers=count, worker_models=models or None, ray=ray is not None
        )
        await services.store.migrate()
        runners = services.workers
        tune_collector()
        loop = asyncio.get_running_loop()

        def drain() -> None:
            for runner in runners:
                runner.drain(loaded.drain_seconds)
            exit_after(loaded.drain_seconds + 2)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, drain)
        stopping = asyncio.Event()
        jobs = asyncio.create_task(services.datasets.run(stopping))
        try:
            await asyncio.gather(*(runner.run() for runner in runners))
        finally:
            stopping.set()
            await jobs
            await services.engines.close()
            await services.store.close()

    asyncio.run(main())


@app.command("run-batch")
def run_batch(
    input: Annotated[
        Path, typer.Option("--input", "-i", help="Batch input JSONL (OpenAI format).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the results.")],
    errors: Annotated[
        Path | None,
        typer.Option(
            "--errors", "-e", help="Where to write failed lines [default: OUTPUT.errors.jsonl]."
        ),
    ] = None,
    config: ConfigOpt = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Keep the queue here [default: a temp dir].")
    ] = None,
    completion_window: Annotated[str, typer.Option(help="Deadline for the batch.")] = "24h",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run a JSONL batch file offline, without a server, and write its results. With
    --data-dir, a run stopped part-way (killed, crashed) carries on when run again: only
    the lines without a result run."""
    if not input.is_file():
        raise InvalidRequest(f"input file {input} does not exist")
    errors = writable(errors or output.with_suffix(".errors.jsonl"), "errors file")
    writable(output)
    with ExitStack() as stack:
        directory = data_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="slackwater-"))
        )
        stack.enter_context(exclusive(directory))
        loaded = settings(config, data_dir=directory, lease_size=OFFLINE_LEASE_SIZE)
        batch = asyncio.run(
            _run_offline(loaded, input, output, errors, completion_window, progress)
        )
    counts = batch["request_counts"]
    err_console.print(
        f"batch {batch['id']} {batch['status']}: {counts['completed']} completed, "
        f"{counts['failed']} failed -> {output}"
        + (f", errors -> {errors}" if counts["failed"] else "")
    )
    if batch["status"] == BatchStatus.FAILED:
        raise SlackwaterError(f"{input} failed validation; nothing ran")
    if counts["failed"]:
        raise SlackwaterError(
            f"{counts['failed']} of {counts['total']} requests failed; see {errors}"
        )


async def _run_offline(
    loaded: Settings, input: Path, output: Path, errors: Path, window: str, show: bool
) -> dict[str, Any]:
    from slackwater.api.schemas import batch_json
    from slackwater.app import build
    from slackwater.runtime.offline import Progress as Callbacks
    from slackwater.runtime.offline import run_file

    services = build(loaded, monitor=True, workers=1)
    await services.store.migrate()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=err_console, disable=not show) as bar:
            task = bar.add_task("validating", total=None)
            callbacks = Callbacks(
                validating=lambda total: bar.update(task, total=total),
                validated=lambda n: bar.advance(task, n),
                loading=lambda model: bar.update(task, description=f"loading {model}"),
                running=lambda total: bar.update(
                    task, description="running", completed=0, total=total
                ),
                recorded=lambda n: bar.advance(task, n),
            )
            batch = await run_file(
                services, input, output, errors, completion_window=window, progress=callbacks
            )
        for error in batch.errors:
            where = f"{input}:{error.line}" if error.line else str(input)
            err_console.print(f"{where}: {error.message}")
        return batch_json(batch)
    finally:
        await services.engines.close()
        await services.store.close()
