"""Client commands: `batches` and `files` against a running server, over HTTP."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from slackwater.cli.common import JsonOpt, app, console, err_console, writable
from slackwater.domain.batch import BatchStatus
from slackwater.domain.errors import InvalidRequest, SlackwaterError
from slackwater.runtime.offline import endpoint_of

batches_app = typer.Typer(
    help="Create, inspect and cancel batches on a server.", no_args_is_help=True
)
files_app = typer.Typer(help="Upload, list and delete files on a server.", no_args_is_help=True)
app.add_typer(batches_app, name="batches")
app.add_typer(files_app, name="files")

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
BaseUrlOpt = Annotated[
    str,
    typer.Option("--base-url", envvar="SLACKWATER_BASE_URL", help="Server URL, up to /v1."),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", envvar="SLACKWATER_API_KEY", help="API key, if the server has keys."),
]
WaitOpt = Annotated[bool, typer.Option(help="Wait until the batch ends.")]
ResultsOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="With --wait: save results here.")
]


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
    if len(items) == 1:
        _line_errors(items[0])


def _line_errors(batch: dict[str, Any]) -> None:
    """A batch's input errors (why it failed validation), one line each."""
    for error in (batch.get("errors") or {}).get("data", []):
        where = f"line {error['line']}" if error.get("line") else "input file"
        field = f" ({error['param']})" if error.get("param") else ""
        err_console.print(f"{where}{field}: {error['message']}")


def _ended_well(batch: dict[str, Any]) -> None:
    """Fail (non-zero exit, one line) unless the batch completed with every request."""
    counts, status = batch["request_counts"], batch["status"]
    if status == "completed" and not counts["failed"]:
        return
    if status == "failed":
        raise SlackwaterError(f"batch {batch['id']} failed validation; nothing ran")
    done = f"{counts['completed']} of {counts['total']} requests completed"
    where = f"; failed lines in {batch['error_file_id']}" if batch.get("error_file_id") else ""
    raise SlackwaterError(f"batch {batch['id']} {status}: {done}{where}")


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
    """Create a batch (uploading --input first). With --wait, exits non-zero unless the
    batch completes with every request."""
    if (input is None) == (input_file_id is None):
        raise InvalidRequest("pass exactly one of --input and --input-file-id")
    if output is not None:
        writable(output)
    with _client(base_url, api_key) as client:
        uploaded = None
        if input is not None:
            endpoint = endpoint or endpoint_of(input)
            uploaded = input_file_id = _upload(client, input)["id"]
        if endpoint is None:
            raise InvalidRequest("--endpoint is required with --input-file-id")
        try:
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
        except SlackwaterError:
            if uploaded is not None:  # nothing uses the upload: do not leave it behind
                client.delete(f"files/{uploaded}")
            raise
        if wait:
            batch = _wait(client, batch)
            if output is not None:
                _save_results(client, batch, output)
    _print(batch, json_out, lambda b: _batch_table([b]))
    if wait:
        _ended_well(batch)


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
    if output is not None:
        writable(output)
    with _client(base_url, api_key) as client:
        batch = _call(client.post(f"batches/{batch_id}/retry"))
        if wait:
            batch = _wait(client, batch)
            if output is not None:
                _save_results(client, batch, output)
    _print(batch, json_out, lambda b: _batch_table([b]))
    if wait:
        _ended_well(batch)


def _save_results(client: httpx.Client, batch: dict[str, Any], output: Path | None) -> None:
    if not batch.get("output_file_id") and not batch.get("error_file_id"):
        _line_errors(batch)
        raise SlackwaterError(f"batch {batch['id']} is {batch['status']}: it has no results")
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
    if output is not None:
        writable(output)
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
