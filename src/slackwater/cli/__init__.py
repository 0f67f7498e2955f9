"""The `slackwater` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from slackwater import __version__
from slackwater.config import DEFAULT_CHAT_MODEL, Settings
from slackwater.domain.batch import BatchStatus
from slackwater.domain.clock import utcnow
from slackwater.domain.errors import InvalidRequest, SlackwaterError
from slackwater.runtime.offline import OFFLINE_LEASE_SIZE, endpoint_of
from slackwater.runtime.process import tune_collector

app = typer.Typer(
    help="slackwater: cost-first batch inference with an OpenAI-compatible Batch API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
batches_app = typer.Typer(
    help="Create, inspect and cancel batches on a server.", no_args_is_help=True
)
files_app = typer.Typer(help="Upload, list and delete files on a server.", no_args_is_help=True)
models_app = typer.Typer(help="The configured models.", invoke_without_command=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(batches_app, name="batches")
app.add_typer(files_app, name="files")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")

# Piped output keeps whole ids on one line; a terminal gets its own width.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 250)
err_console = Console(stderr=True, soft_wrap=True, highlight=False)
T = TypeVar("T")

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
BaseUrlOpt = Annotated[
    str,
    typer.Option("--base-url", envvar="SLACKWATER_BASE_URL", help="Server URL, up to /v1."),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", envvar="SLACKWATER_API_KEY", help="API key, if the server has keys."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
WaitOpt = Annotated[bool, typer.Option(help="Wait until the batch ends.")]
ResultsOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="With --wait: save results here.")
]
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


def _settings(config: Path | None, **overrides: Any) -> Settings:
    return Settings.load(config, **overrides)


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# -- server side --------------------------------------------------------------------------


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
    """Run the API server (with a worker inside, unless --workers 0)."""
    import uvicorn

    from slackwater.api.server import create_app
    from slackwater.app import build

    settings = _settings(config, data_dir=data_dir, host=host, port=port)
    _logging()
    services = build(settings, workers=workers)
    tune_collector()
    uvicorn.run(
        create_app(services),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=30,
    )


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
) -> None:
    """Run a worker against the same store as a server.

    SIGTERM is a preemption notice: the worker leases nothing more, finishes the chunk in
    hand if it can within `drain_seconds` (AWS gives two minutes), else gives the rest
    back to the queue. Workers on spot and on-demand pools lease what the planner
    places there.
    """
    from slackwater.app import build

    settings = _settings(config, data_dir=data_dir, pool=pool)
    _logging()

    async def main() -> None:
        services = build(settings, monitor=False, workers=1, worker_models=models or None)
        await services.store.migrate()
        [runner] = services.workers
        tune_collector()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.drain, settings.drain_seconds)
        try:
            await runner.run()
        finally:
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
    """Run a JSONL batch file offline, without a server, and write its results."""
    if not input.is_file():
        raise InvalidRequest(f"input file {input} does not exist")
    errors = errors or output.with_suffix(".errors.jsonl")
    with ExitStack() as stack:
        directory = data_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="slackwater-"))
        )
        settings = _settings(config, data_dir=directory, lease_size=OFFLINE_LEASE_SIZE)
        batch = asyncio.run(
            _run_offline(settings, input, output, errors, completion_window, progress)
        )
    counts = batch["request_counts"]
    err_console.print(
        f"batch {batch['id']} {batch['status']}: {counts['completed']} completed, "
        f"{counts['failed']} failed -> {output}"
        + (f", errors -> {errors}" if counts["failed"] else "")
    )
    if batch["status"] == BatchStatus.FAILED:
        raise typer.Exit(1)


async def _run_offline(
    settings: Settings, input: Path, output: Path, errors: Path, window: str, show: bool
) -> dict[str, Any]:
    from slackwater.api.schemas import batch_json
    from slackwater.app import build
    from slackwater.runtime.offline import Progress as Callbacks
    from slackwater.runtime.offline import run_file

    services = build(settings, monitor=True, workers=1)
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
    from slackwater.domain.model import Catalog

    settings = _settings(config)
    router = router_for(settings, Catalog(settings.catalog()))
    named = router.named(route)
    if named is None:
        raise InvalidRequest(f"no route named {route!r} in the config")
    given = {
        "task": task,
        "min_quality": min_quality,
        "max_quality_drop": max_quality_drop,
        "max_price": max_price,
        "features": feature or None,
    }
    constraints = router.constraints({k: v for k, v in given.items() if v is not None}, named, 0)
    if isinstance(constraints, list):
        raise InvalidRequest("; ".join(e.message for e in constraints))
    body = {
        "model": route,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
    }
    choice = router.choose("/v1/chat/completions", body, constraints, 0, requested=route)
    if not isinstance(choice, tuple):
        raise InvalidRequest(choice.message)
    record = json.loads(choice[1])
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
    from slackwater.domain.model import Catalog
    from slackwater.engines.transformers import token_counter
    from slackwater.runtime.quote import by_model, quote_file

    if not input.is_file():
        raise InvalidRequest(f"input file {input} does not exist")
    settings = _settings(config, data_dir=data_dir)
    catalog = Catalog(settings.catalog())
    counters = {
        m.name: counter
        for m in catalog.models
        if m.engine == "transformers"
        and (counter := token_counter(m, settings.data_dir)) is not None
    }
    result = quote_file(input, catalog, counters)
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


# -- models and keys ------------------------------------------------------------------------


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
    settings = _settings(config, data_dir=data_dir)
    rows: list[dict[str, Any]] = [
        {
            "id": m.name,
            "engine": m.engine,
            "endpoints": sorted(e.value for e in m.endpoints),
            "max_batch_size": m.max_batch_size,
            "aliases": list(m.aliases),
        }
        for m in settings.catalog()
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
    from slackwater.engines.tiny_llama import build_tiny_llama
    from slackwater.engines.transformers import resolve_path

    settings = _settings(config, data_dir=data_dir)
    if path is None:
        spec = next((m for m in settings.models if m.name == DEFAULT_CHAT_MODEL), None)
        if spec is None or "path" not in spec.options:
            raise InvalidRequest("no tiny-llama model in the config; pass --path")
        path = resolve_path(str(spec.options["path"]), settings.data_dir)
    if (path / "config.json").exists():
        err_console.print(f"{path} already holds a model")
        return
    build_tiny_llama(path)
    err_console.print(f"built {path}")


@keys_app.command("create")
def create_key(
    project: Annotated[str, typer.Option(help="The project the key belongs to.")] = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create an API key (printed once; only its hash is stored). Once a key exists,
    every API call needs one."""
    from slackwater.api.auth import hash_key, new_key
    from slackwater.store.sql import SqlStore

    settings = _settings(config, data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def main() -> str:
        store = SqlStore(settings.resolved_database_url)
        try:
            await store.migrate()
            key = new_key()
            await store.add_key(hash_key(key), project, utcnow())
            return key
        finally:
            await store.close()

    print(asyncio.run(main()))


# -- client side ----------------------------------------------------------------------------


def _client(base_url: str, api_key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=base_url.rstrip("/") + "/", headers=headers, timeout=300)


def _call(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json() if "json" in response.headers.get("content-type", "") else response
    try:
        error = response.json()["error"]
        message = error["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300]
    raise SlackwaterError(f"HTTP {response.status_code}: {message}")


def _print(data: Any, json_out: bool, render: Callable[[Any], None]) -> None:
    if json_out:
        console.print_json(json.dumps(data))
    else:
        render(data)


def _show(
    base_url: str,
    api_key: str | None,
    json_out: bool,
    render: Callable[[Any], None],
    method: str,
    path: str,
    **request: Any,
) -> None:
    """One API call, its answer printed as JSON or rendered as a table."""
    with _client(base_url, api_key) as client:
        data = _call(client.request(method, path, **request))
    _print(data, json_out, render)


def _batch_table(items: list[dict[str, Any]]) -> None:
    table = Table("id", "status", "endpoint", "done", "failed", "total", "created")
    for b in items:
        counts = b["request_counts"]
        table.add_row(
            b["id"],
            b["status"],
            b["endpoint"],
            str(counts["completed"]),
            str(counts["failed"]),
            str(counts["total"]),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(b["created_at"])),
        )
    console.print(table)


def _file_table(items: list[dict[str, Any]]) -> None:
    table = Table("id", "filename", "purpose", "bytes", "created")
    for f in items:
        table.add_row(
            f["id"],
            f["filename"],
            f["purpose"],
            str(f["bytes"]),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(f["created_at"])),
        )
    console.print(table)


def _upload(client: httpx.Client, path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InvalidRequest(f"file {path} does not exist")
    with path.open("rb") as handle:
        result: dict[str, Any] = _call(
            client.post("files", files={"file": (path.name, handle)}, data={"purpose": "batch"})
        )
    return result


def _wait(client: httpx.Client, batch: dict[str, Any]) -> dict[str, Any]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task(batch["status"], total=None)
        while batch["status"] not in {s.value for s in BatchStatus if s.is_terminal}:
            time.sleep(0.5)
            batch = _call(client.get(f"batches/{batch['id']}"))
            counts = batch["request_counts"]
            bar.update(
                task,
                description=batch["status"],
                total=counts["total"] or None,
                completed=counts["completed"] + counts["failed"],
            )
    return batch


@batches_app.command("create")
def batches_create(
    input: Annotated[
        Path | None, typer.Option("--input", "-i", help="Upload this JSONL file first.")
    ] = None,
    input_file_id: Annotated[str | None, typer.Option(help="An already uploaded file.")] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Default: the url of the first line.")
    ] = None,
    completion_window: Annotated[str, typer.Option(help="Deadline, 1m to 7d.")] = "24h",
    wait: WaitOpt = False,
    output: ResultsOpt = None,
    base_url: BaseUrlOpt = DEFAULT_BASE_URL,
    api_key: ApiKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a batch (uploading --input first)."""
    if (input is None) == (input_file_id is None):
        raise InvalidRequest("pass exactly one of --input and --input-file-id")
    with _client(base_url, api_key) as client:
        if input is not None:
            input_file_id = _upload(client, input)["id"]
            endpoint = endpoint or endpoint_of(input)
        if endpoint is None:
            raise InvalidRequest("--endpoint is required with --input-file-id")
        batch = _call(
            client.post(
                "batches",
                json={
                    "input_file_id": input_file_id,
                    "endpoint": endpoint,
                    "completion_window": completion_window,
                },
            )
        )
        if wait:
            batch = _wait(client, batch)
            if output is not None:
                _save_results(client, batch, output)
    _print(batch, json_out, lambda b: _batch_table([b]))


@batches_app.command("get")
def batches_get(
    batch_id: str,
    base_url: BaseUrlOpt = DEFAULT_BASE_URL,
    api_key: ApiKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one batch."""
    _show(base_url, api_key, json_out, lambda b: _batch_table([b]), "GET", f"batches/{batch_id}")


@batches_app.command("list")
def batches_list(
    limit: int = 20,
    after: str | None = None,
    base_url: BaseUrlOpt = DEFAULT_BASE_URL,
    api_key: ApiKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List batches, newest first."""
    params: dict[str, Any] = {"limit": limit, **({"after": after} if after else {})}
    render = lambda p: _batch_table(p["data"])  # noqa: E731
    _show(base_url, api_key, json_out, render, "GET", "batches", params=params)


@batches_app.command("cancel")
def batches_cancel(
    batch_id: str,
    base_url: BaseUrlOpt = DEFAULT_BASE_URL,
    api_key: ApiKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Cancel a batch; finished results are kept."""
    path = f"batches/{batch_id}/cancel"
    _show(base_url, api_key, json_out, lambda b: _batch_table([b]), "POST", path)


@batches_app.command("retry")
def batches_retry(
    batch_id: str,
    wait: WaitOpt = False,
    output: ResultsOpt = None,
    base_url: BaseUrlOpt = DEFAULT_BASE_URL,
    api_key: ApiKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run again only the lines of an ended batch that failed, were cancelled or expired."""
    with _client(base_url, api_key) as client:
        batch = _call(client.post(f"batches/{batch_id}/retry"))
        if wait:
            batch = _wait(client, batch)
            if output is not None:
                _save_results(client, batch, output)
    _print(batch, json_out, lambda b: _batch_table([b]))


def _save_results(client: httpx.Client, batch: dict[str, Any], output: Path | None) -> None:
    for key, suffix in (("output_file_id", ""), ("error_file_id", ".errors")):
        file_id = batch.get(key)
        if not file_id:
            continue
        with client.stream("GET", f"files/{file_id}/content") as response:
            if not response.is_success:
                response.read()
                _call(response)
            if output is None:
                for text in response.iter_text():
                    sys.stdout.write(text)
                continue
            target = output if not suffix else output.with_suffix(f"{suffix}.jsonl")
            with target.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
            err_console.print(f"wrote {target}")


@batches_app.command("results")
def batches_results(
    batch_id: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File [default: stdout].")
    ] = None,
    base_url: BaseUrlOpt = DEFAULT_BASE_URL,
    api_key: ApiKeyOpt = None,
) -> None:
    """Print (or save) a batch's output and error lines."""
    with _client(base_url, api_key) as client:
        _save_results(client, _call(client.get(f"batches/{batch_id}")), output)


@files_app.command("upload")
def files_upload(
    path: Path,
    base_url: BaseUrlOpt = DEFAULT_BASE_URL,
    api_key: ApiKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Upload a JSONL file for batches."""
    with _client(base_url, api_key) as client:
        file = _upload(client, path)
    _print(file, json_out, lambda f: _file_table([f]))


@files_app.command("list")
def files_list(
    base_url: BaseUrlOpt = DEFAULT_BASE_URL, api_key: ApiKeyOpt = None, json_out: JsonOpt = False
) -> None:
    """List files."""
    _show(base_url, api_key, json_out, lambda p: _file_table(p["data"]), "GET", "files")


@files_app.command("get")
def files_get(
    file_id: str,
    base_url: BaseUrlOpt = DEFAULT_BASE_URL,
    api_key: ApiKeyOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one file."""
    _show(base_url, api_key, json_out, lambda f: _file_table([f]), "GET", f"files/{file_id}")


@files_app.command("delete")
def files_delete(
    file_id: str, base_url: BaseUrlOpt = DEFAULT_BASE_URL, api_key: ApiKeyOpt = None
) -> None:
    """Delete a file and its content."""
    with _client(base_url, api_key) as client:
        _call(client.delete(f"files/{file_id}"))
    err_console.print(f"deleted {file_id}")


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


# Commands defined in submodules register themselves on `app`.
from slackwater.cli import capacity as capacity  # noqa: E402
from slackwater.cli import router as router  # noqa: E402


def main() -> None:
    try:
        app()
    except SlackwaterError as exc:
        err_console.print(f"error: {exc.message}", highlight=False)
        sys.exit(1)
    except httpx.HTTPError as exc:
        err_console.print(f"error: cannot reach the server: {exc}", highlight=False)
        sys.exit(1)
