"""`slackwater webhooks`: a project's webhook endpoints, managed where the server's store
is (the same config), as the API's /v1/webhook_endpoints manages them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from slackwater.cli.common import ConfigOpt, DataDirOpt, JsonOpt, app, console, with_store
from slackwater.domain.clock import utcnow
from slackwater.domain.webhooks import EVENT_TYPES
from slackwater.runtime.endpoints import WebhookEndpoints

webhooks_app = typer.Typer(
    help="Webhook endpoints: create, list, delete, rotate their secrets, test.",
    no_args_is_help=True,
)
app.add_typer(webhooks_app, name="webhooks")
T = TypeVar("T")
ProjectOpt = Annotated[str, typer.Option(help="The project whose endpoints these are.")]


def _with_endpoints(
    config: Any, data_dir: Any, work: Callable[[WebhookEndpoints], Awaitable[T]]
) -> T:
    return with_store(
        config,
        data_dir,
        lambda store, loaded: work(
            WebhookEndpoints(
                store,
                utcnow,
                allow_http=loaded.webhook_allow_http,
                timeout=loaded.webhook_timeout_seconds,
            )
        ),
    )


@webhooks_app.command("create")
def create_endpoint(
    url: Annotated[str, typer.Argument(help="Where events are POSTed (https://).")],
    event: Annotated[
        list[str] | None,
        typer.Option(
            help=f"An event to send (repeat the option) [default: all: {', '.join(EVENT_TYPES)}]."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="A name to tell endpoints apart [default: the URL].")
    ] = None,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create an endpoint and print its signing secret (shown only now)."""
    endpoint = _with_endpoints(
        config,
        data_dir,
        lambda hooks: hooks.create(
            project, name=name or url, url=url, event_types=event or list(EVENT_TYPES)
        ),
    )
    if json_out:
        console.print_json(json.dumps(endpoint.as_json(with_secret=True)))
        return
    console.print(f"{endpoint.id} {endpoint.url}")
    print(endpoint.secret)


@webhooks_app.command("list")
def list_endpoints(
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the project's endpoints (never their secrets)."""
    page = _with_endpoints(config, data_dir, lambda hooks: hooks.list(project, limit=100))
    found = [endpoint.as_json() for endpoint in page.items]
    if json_out:
        console.print_json(json.dumps(found))
        return
    table = Table("id", "name", "url", "events", "secret")
    for endpoint in found:
        table.add_row(
            endpoint["id"],
            endpoint["name"],
            endpoint["url"],
            ", ".join(endpoint["event_types"]),
            endpoint["signing_secret_hint"],
        )
    console.print(table)


@webhooks_app.command("delete")
def delete_endpoint(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id (whep_...).")],
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete an endpoint; events not yet delivered to it are dropped."""
    _with_endpoints(config, data_dir, lambda hooks: hooks.delete(project, endpoint_id))
    console.print(f"deleted {endpoint_id}")


@webhooks_app.command("rotate")
def rotate_secret(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id (whep_...).")],
    keep_old: Annotated[
        bool, typer.Option(help="Keep signing with the old secret too for 24 hours.")
    ] = False,
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Give an endpoint a new signing secret and print it (shown only now)."""
    endpoint = _with_endpoints(
        config, data_dir, lambda hooks: hooks.rotate(project, endpoint_id, keep_old_secret=keep_old)
    )
    print(endpoint.secret)


@webhooks_app.command("test")
def test_endpoint(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id (whep_...).")],
    event: Annotated[str, typer.Option(help="The event type of the sample.")] = "batch.completed",
    project: ProjectOpt = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Send a signed sample event to the endpoint now; print the HTTP status it answered."""
    status = _with_endpoints(
        config, data_dir, lambda hooks: hooks.test(project, endpoint_id, event)
    )
    console.print(f"{endpoint_id} answered HTTP {status}")
