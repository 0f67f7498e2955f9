"""`slackwater keys`: API keys, each belonging to a project. Run where the server's store
is (the same config); revocation takes effect at once on every server sharing it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from slackwater.cli.common import ConfigOpt, DataDirOpt, JsonOpt, app, console, with_store
from slackwater.domain.clock import to_unix, utcnow
from slackwater.domain.keys import ApiKey, KeyScope
from slackwater.runtime.keys import KeyService

keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
T = TypeVar("T")


def _with_keys(config: Any, data_dir: Any, work: Callable[[KeyService], Awaitable[T]]) -> T:
    return with_store(config, data_dir, lambda store, _: work(KeyService(store, utcnow)))


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "project": key.project,
        "name": key.name,
        "scope": key.scope.value,
        "created_at": to_unix(key.created_at),
        "expires_at": to_unix(key.expires_at),
        "revoked_at": to_unix(key.revoked_at),
        "active": key.active(utcnow()),
    }


@keys_app.command("create")
def create_key(
    project: Annotated[str, typer.Option(help="The project the key belongs to.")] = "default",
    name: Annotated[str | None, typer.Option(help="A name to tell keys apart.")] = None,
    scope: Annotated[
        KeyScope,
        typer.Option(help="all: every call; read: GET only; batch: files and batches only."),
    ] = KeyScope.ALL,
    expires_in: Annotated[
        str | None, typer.Option(help="Expire after this long, e.g. 30d or 12h [default: never].")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create an API key and print it (shown only now; only its hash is stored). Once a
    key exists, every API call needs one."""
    secret, _ = _with_keys(
        config,
        data_dir,
        lambda keys: keys.create(project, name=name, scope=scope.value, expires_in=expires_in),
    )
    print(secret)


@keys_app.command("list")
def list_keys(
    project: Annotated[str | None, typer.Option(help="Only this project's keys.")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List keys (never their secrets), with their scope, expiry and whether revoked."""
    found = [key_json(k) for k in _with_keys(config, data_dir, lambda keys: keys.list(project))]
    if json_out:
        console.print_json(json.dumps(found))
        return
    table = Table("id", "project", "name", "scope", "expires", "state")
    for key in found:
        state = "active" if key["active"] else ("revoked" if key["revoked_at"] else "expired")
        expires = key["expires_at"]
        table.add_row(
            key["id"],
            key["project"],
            key["name"] or "",
            key["scope"],
            utcnow().fromtimestamp(expires).isoformat(timespec="minutes") if expires else "never",
            state,
        )
    console.print(table)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...), from `keys list`.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a key: every server sharing the store refuses it from its next call."""
    key = _with_keys(config, data_dir, lambda keys: keys.revoke(key_id))
    console.print(f"revoked {key.id} ({key.project})")
