"""The webhook outbox: an event row written in the same transaction that ends a batch,
so a crash can neither lose the event nor send one for a change that did not commit.
See docs/decisions/0010-webhook-outbox.md."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from slackwater.domain.batch import BatchStatus
from slackwater.ports import Delivery
from slackwater.store.database import Database
from slackwater.store.schema import webhook_deliveries

EVENTS = {
    BatchStatus.COMPLETED: "batch.completed",
    BatchStatus.FAILED: "batch.failed",
    BatchStatus.EXPIRED: "batch.expired",
    BatchStatus.CANCELLED: "batch.cancelled",
}


async def enqueue(conn: AsyncConnection, batch_id: str, status: BatchStatus, now: datetime) -> None:
    """Within the caller's transaction: the event for a batch entering `status`, if any."""
    event = EVENTS.get(status)
    if event is None:
        return
    await conn.execute(
        insert(webhook_deliveries).values(
            batch_id=batch_id,
            event=event,
            payload=json.dumps({"type": event, "batch_id": batch_id}),
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


class SqlOutbox(Database):
    async def due_deliveries(self, now: datetime, limit: int) -> list[Delivery]:
        query = (
            select(webhook_deliveries)
            .where(
                webhook_deliveries.c.delivered_at.is_(None),
                webhook_deliveries.c.next_attempt_at <= now,
            )
            .order_by(webhook_deliveries.c.next_attempt_at)
            .limit(limit)
        )
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [Delivery(r.id, r.batch_id, r.event, r.payload.encode(), r.attempts) for r in rows]

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
