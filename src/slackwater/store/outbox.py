"""The webhook outbox: event rows written in the same transaction that ends a batch or a
response, so a crash can neither lose an event nor send one for a change that did not
commit; one row per receiver (each of the project's endpoints that asked for the event
type, and the configured `webhook_url`), all with the same event id.
See docs/decisions/0010-webhook-outbox.md."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from slackwater.domain.ids import new_id
from slackwater.domain.webhooks import event_json
from slackwater.ports import Delivery
from slackwater.store.database import Database
from slackwater.store.endpoints import endpoint_of
from slackwater.store.schema import webhook_deliveries, webhook_endpoints


async def enqueue(
    conn: AsyncConnection,
    project: str,
    subject_id: str,
    event_type: str,
    now: datetime,
    *,
    configured: bool,
) -> int:
    """Within the caller's transaction: the event for every receiver that wants it
    (`configured`: the server's own `webhook_url` as well). Returns how many."""
    rows = await conn.execute(
        select(webhook_endpoints.c.id, webhook_endpoints.c.event_types).where(
            webhook_endpoints.c.project == project
        )
    )
    targets: list[str | None] = [
        endpoint_id for endpoint_id, types in rows if event_type in orjson.loads(types)
    ]
    if configured:
        targets.append(None)
    if not targets:
        return 0
    event_id = new_id("evt")
    payload = event_json(event_id, event_type, subject_id, now).decode()
    await conn.execute(
        insert(webhook_deliveries),
        [
            {
                "batch_id": subject_id,
                "event": event_type,
                "payload": payload,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "endpoint_id": target,
                "event_id": event_id,
            }
            for target in targets
        ],
    )
    return len(targets)


class SqlOutbox(Database):
    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        query = (
            select(webhook_deliveries, webhook_endpoints)
            .select_from(
                webhook_deliveries.outerjoin(
                    webhook_endpoints,
                    webhook_endpoints.c.id == webhook_deliveries.c.endpoint_id,
                )
            )
            .where(
                webhook_deliveries.c.delivered_at.is_(None),
                webhook_deliveries.c.next_attempt_at <= now,
            )
            .order_by(webhook_deliveries.c.next_attempt_at)
            .limit(limit)
        )
        async with self.reading() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            Delivery(
                r[webhook_deliveries.c.id],
                r[webhook_deliveries.c.batch_id],
                r[webhook_deliveries.c.event],
                r[webhook_deliveries.c.payload].encode(),
                r[webhook_deliveries.c.attempts],
                event_id=r[webhook_deliveries.c.event_id],
                endpoint_id=r[webhook_deliveries.c.endpoint_id],
                endpoint=endpoint_of(r) if r[webhook_endpoints.c.id] is not None else None,
            )
            for r in rows
        ]

    async def delivered(self, delivery_id: int, now: datetime) -> None:
        async with self.writing() as conn:
            await conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == delivery_id)
                .values(delivered_at=now, attempts=webhook_deliveries.c.attempts + 1)
            )

    async def delivery_failed(
        self, delivery_id: int, error: str, next_attempt_at: datetime | None
    ) -> None:
        values: dict[str, Any] = {
            "attempts": webhook_deliveries.c.attempts + 1,
            "last_error": error[:2000],
        }
        if next_attempt_at is None:
            values["delivered_at"] = datetime.max.replace(tzinfo=UTC)
        else:
            values["next_attempt_at"] = next_attempt_at
        async with self.writing() as conn:
            await conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == delivery_id)
                .values(**values)
            )
