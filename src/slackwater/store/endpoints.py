"""Webhook endpoints: where a project's events go, and the secrets that sign them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update

from slackwater.domain.errors import NotFound
from slackwater.domain.text import shown
from slackwater.domain.webhooks import WebhookEndpoint
from slackwater.ports import Page
from slackwater.store.database import Database
from slackwater.store.schema import webhook_endpoints


def endpoint_of(row: Any) -> WebhookEndpoint:
    """An endpoint from a row's mapping (keyed by column, so rows of a join work too)."""
    c = webhook_endpoints.c
    return WebhookEndpoint(
        id=row[c.id],
        project=row[c.project],
        name=row[c.name],
        url=row[c.url],
        event_types=tuple(orjson.loads(row[c.event_types])),
        secret=row[c.secret],
        created_at=row[c.created_at],
        updated_at=row[c.updated_at],
        previous_secret=row[c.previous_secret],
        previous_until=row[c.previous_until],
    )


def _not_found(endpoint_id: str) -> NotFound:
    return NotFound(
        f"No webhook endpoint with id '{shown(endpoint_id)}'", param="webhook_endpoint_id"
    )


class SqlEndpoints(Database):
    async def add_endpoint(self, endpoint: WebhookEndpoint) -> None:
        async with self.writing() as conn:
            await conn.execute(
                insert(webhook_endpoints).values(
                    id=endpoint.id,
                    project=endpoint.project,
                    name=endpoint.name,
                    url=endpoint.url,
                    event_types=orjson.dumps(list(endpoint.event_types)).decode(),
                    secret=endpoint.secret,
                    created_at=endpoint.created_at,
                    updated_at=endpoint.updated_at,
                )
            )

    async def get_endpoint(self, project: str, endpoint_id: str) -> WebhookEndpoint:
        query = select(webhook_endpoints).where(
            webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.project == project
        )
        async with self.reading() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise _not_found(endpoint_id)
        return endpoint_of(row._mapping)

    async def list_endpoints(self, project: str, *, limit: int, after: str | None) -> Page:
        query = select(webhook_endpoints).where(webhook_endpoints.c.project == project)
        return await self.page(
            query,
            webhook_endpoints.c.id,
            limit=limit,
            after=after,
            convert=lambda row: endpoint_of(row._mapping),
        )

    async def change_endpoint(
        self,
        project: str,
        endpoint_id: str,
        now: datetime,
        *,
        name: str | None = None,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        secret: str | None = None,
        previous_until: datetime | None = None,
    ) -> WebhookEndpoint:
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = name
        if url is not None:
            values["url"] = url
        if event_types is not None:
            values["event_types"] = orjson.dumps(list(event_types)).decode()
        if secret is not None:
            # The secret it replaces signs too, until `previous_until` (None: not at all).
            values["secret"] = secret
            values["previous_secret"] = (
                webhook_endpoints.c.secret if previous_until is not None else None
            )
            values["previous_until"] = previous_until
        where = (webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.project == project)
        async with self.writing() as conn:
            row = (await conn.execute(select(webhook_endpoints).where(*where))).first()
            if row is None:
                raise _not_found(endpoint_id)
            current = endpoint_of(row._mapping)
            changed = any(
                getattr(current, key) != value
                for key, value in (("name", name), ("url", url))
                if value is not None
            ) or (event_types is not None and tuple(event_types) != current.event_types)
            if values:
                if changed or secret is not None:
                    values["updated_at"] = now
                await conn.execute(update(webhook_endpoints).where(*where).values(**values))
                row = (await conn.execute(select(webhook_endpoints).where(*where))).first()
        assert row is not None
        return endpoint_of(row._mapping)

    async def delete_endpoint(self, project: str, endpoint_id: str) -> None:
        async with self.writing() as conn:
            result = await conn.execute(
                delete(webhook_endpoints).where(
                    webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.project == project
                )
            )
        if not result.rowcount:
            raise _not_found(endpoint_id)
