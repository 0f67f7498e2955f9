"""`slackwater keys`: API keys, each belonging to a project."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from slackwater.cli.common import ConfigOpt, DataDirOpt, app, settings
from slackwater.domain.clock import utcnow

keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create_key(
    project: Annotated[str, typer.Option(help="The project the key belongs to.")] = "default",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create an API key (printed once; only its hash is stored). Once a key exists,
    every API call needs one."""
    from slackwater.api.auth import hash_key, new_key
    from slackwater.app import open_store

    loaded = settings(config, data_dir=data_dir)

    async def main() -> str:
        store = open_store(loaded)
        try:
            await store.migrate()
            key = new_key()
            await store.add_key(hash_key(key), project, utcnow())
            return key
        finally:
            await store.close()

    print(asyncio.run(main()))
