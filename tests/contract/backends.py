"""Store backends the contract suite runs on. A third backend joins by adding a
`StoreBackend` here: the suite itself sees only the `Store` port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from slackwater.ports import Store


@dataclass(frozen=True)
class StoreBackend:
    name: str
    # A new store (its own connections) on the backend's data; `webhooks`: write the
    # outbox when batches end.
    open: Callable[..., Store]
    # Holds a write transaction open, as a long intake or a busy worker does: reads and
    # polls with nothing to do must not wait for it.
    writer_busy: Callable[[Store], AbstractAsyncContextManager[None]]


def sql_backend(name: str, url: str) -> StoreBackend:
    from sqlalchemy import text

    from slackwater.store.sql import SqlStore

    def open_store(*, webhooks: bool = False) -> Store:
        return SqlStore(url, webhooks=webhooks)

    @asynccontextmanager
    async def writer_busy(store: Store) -> AsyncIterator[None]:
        assert isinstance(store, SqlStore)
        async with store.engine.begin() as writer:
            await writer.execute(text("UPDATE batches SET total = total"))
            yield

    return StoreBackend(name, open_store, writer_busy)
