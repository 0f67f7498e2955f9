"""`slackwater predictions`: run a classical model over a table here (a dataset job, with
a progress bar), resume one whose process died, list jobs, read precomputed answers."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from slackwater.cli.common import (
    ConfigOpt,
    DataDirOpt,
    app,
    console,
    err_console,
    settings,
    writable,
)
from slackwater.domain.errors import InvalidRequest

T = TypeVar("T")
predictions_app = typer.Typer(
    help="Classical models over tables: dataset jobs and precomputed predictions.",
    no_args_is_help=True,
)
app.add_typer(predictions_app, name="predictions")
schedules_app = typer.Typer(
    help="Dataset jobs on a window (every hour, a cron expression), run by the server.",
    no_args_is_help=True,
)
app.add_typer(schedules_app, name="schedules")
ProjectOpt = Annotated[str, typer.Option(help="The project the job belongs to.")]


def _with_services(
    config: Path | None, data_dir: Path | None, work: Callable[[Any], Awaitable[T]]
) -> T:
    from slackwater.app import build

    loaded = settings(config, data_dir=data_dir)

    async def main() -> T:
        services = build(loaded, monitor=False, workers=0)
        await services.store.migrate()
        try:
            return await work(services)
        finally:
            await services.engines.close()
            await services.store.close()

    return asyncio.run(main())


def _show(value: Any) -> None:
    console.print_json(json.dumps(value))


async def _run_here(services: Any, job_id: str, out: Path | None, show: bool) -> dict[str, Any]:
    """Run the job in this process (when it is due), with a progress bar."""
    from slackwater.api.predictions import job_json

    runner = services.datasets
    job = await services.store.get_job(None, job_id)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"))
    with Progress(*columns, TimeElapsedColumn(), console=err_console, disable=not show) as bar:
        task = bar.add_task(f"{job.id} on {job.model}", total=job.total_rows)
        runner.on_progress = lambda _, rows: bar.update(task, completed=rows)
        while not await runner.run_due(job.id):
            job = await services.store.get_job(None, job_id)
            if job.status.ended:
                break
            bar.update(task, description=f"{job.id}: waiting for its last runner's lease")
            await asyncio.sleep(0.5)
    job = await services.store.get_job(None, job_id)
    if out is not None and job.result is not None:
        await asyncio.to_thread(shutil.copyfile, services.blobs.path(job.result), out)
    return job_json(job, services.datasets.cost(job))


def _finished(job: dict[str, Any]) -> None:
    """Show the job; exit 1 unless it completed."""
    _show(job)
    if job["status"] != "completed":
        raise typer.Exit(1)


@predictions_app.command("run")
def run(
    model: Annotated[str, typer.Option(help="The model (serving /v1/predictions).")],
    dataset: Annotated[
        str,
        typer.Option(help="The table: a .csv or .parquet file, or an object (s3://bucket/key)."),
    ],
    key: Annotated[str, typer.Option(help="The column naming each row.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the output table here too.")
    ] = None,
    output: Annotated[str, typer.Option(help="predict, predict_proba or embedding.")] = "predict",
    keep: Annotated[
        list[str] | None, typer.Option(help="A column to copy to the output (repeatable).")
    ] = None,
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows per chunk.")] = 65_536,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Run a model over a table here: chunk by chunk, each chunk recorded as it ends (a
    run killed midway goes on with `predictions resume JOB`), its predictions kept by
    key for `predictions get`."""
    if out is not None:
        writable(out)

    async def work(services: Any) -> dict[str, Any]:
        job = await services.datasets.submit(
            project, model, dataset, key, output=output, keep=keep or [], chunk_rows=chunk_rows
        )
        err_console.print(f"job {job.id}")
        return await _run_here(services, job.id, out, progress)

    _finished(_with_services(config, data_dir, work))


@predictions_app.command("resume")
def resume(
    job_id: str,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the output table here too.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Go on with a job whose runner died (once its lease has run out), from its first
    chunk not recorded."""

    async def work(services: Any) -> dict[str, Any]:
        return await _run_here(services, job_id, out, progress)

    _finished(_with_services(config, data_dir, work))


@predictions_app.command("jobs")
def jobs(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The project's dataset jobs, newest first: status, progress, compute seconds."""
    from slackwater.api.predictions import job_json

    async def work(services: Any) -> list[dict[str, Any]]:
        page = await services.store.list_jobs(project, limit=limit, after=None)
        return [job_json(j, services.datasets.cost(j)) for j in page.items]

    _show(_with_services(config, data_dir, work))


@predictions_app.command("get")
def get(
    model: str,
    key: str,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The model's precomputed prediction for KEY (from its last completed job)."""
    from slackwater.domain.clock import to_unix

    async def work(services: Any) -> dict[str, Any]:
        hit = await services.store.precomputed(model, key)
        if hit is None:
            raise InvalidRequest(f"no precomputed prediction of {model} for key {key!r}")
        return {
            "model": model,
            "key": key,
            "prediction": hit.value,
            "computed_at": to_unix(hit.computed_at),
            "job_id": hit.version,
        }

    _show(_with_services(config, data_dir, work))


@schedules_app.command("create")
def create_schedule(
    model: Annotated[str, typer.Option(help="The model (serving /v1/predictions).")],
    dataset: Annotated[
        str,
        typer.Option(help="The table: a .csv or .parquet file, or an object (s3://bucket/key)."),
    ],
    key: Annotated[str, typer.Option(help="The column naming each row.")],
    every: Annotated[str | None, typer.Option(help="An interval: 30m, 1h, 1d.")] = None,
    cron: Annotated[str | None, typer.Option(help='A cron expression: "0 * * * *".')] = None,
    output: Annotated[str, typer.Option(help="predict, predict_proba or embedding.")] = "predict",
    keep: Annotated[
        list[str] | None, typer.Option(help="A column to copy to the output (repeatable).")
    ] = None,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Run a model over a table on a window; the server (`slackwater serve`) starts each
    run as a dataset job whose deadline is the next run. The first run is due at once."""
    from slackwater.api.predictions import schedule_json
    from slackwater.domain.clock import parse_duration

    async def work(services: Any) -> dict[str, Any]:
        schedule = await services.scheduler.create(
            project,
            model,
            dataset,
            key,
            every_seconds=parse_duration(every, "every").total_seconds() if every else None,
            cron=cron,
            output=output,
            keep=keep or [],
        )
        return schedule_json(schedule)

    _show(_with_services(config, data_dir, work))


@schedules_app.command("list")
def list_schedules(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The project's schedules and when each runs next."""
    from slackwater.api.predictions import schedule_json

    async def work(services: Any) -> list[dict[str, Any]]:
        page = await services.store.list_schedules(project, limit=limit, after=None)
        return [schedule_json(s) for s in page.items]

    _show(_with_services(config, data_dir, work))


@schedules_app.command("runs")
def runs(
    schedule_id: str,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """A schedule's runs, newest first: status (missed ones too), duration, cost."""
    from slackwater.api.predictions import job_json

    async def work(services: Any) -> list[dict[str, Any]]:
        await services.store.get_schedule(project, schedule_id)
        found = await services.store.schedule_runs(schedule_id, limit)
        return [job_json(j, services.datasets.cost(j)) for j in found]

    _show(_with_services(config, data_dir, work))


@schedules_app.command("delete")
def delete_schedule(
    schedule_id: str,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Stop a schedule (its past runs and their outputs stay)."""

    async def work(services: Any) -> None:
        await services.store.delete_schedule(project, schedule_id)

    _with_services(config, data_dir, work)
