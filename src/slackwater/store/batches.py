"""Batches: their records, state moves, counters and quota reads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from slackwater.domain.batch import (
    STATUS_TIMESTAMP,
    Batch,
    BatchStatus,
    LineError,
    RequestCounts,
    check_transition,
)
from slackwater.domain.errors import Conflict, IdempotencyMismatch, NotFound
from slackwater.domain.money import from_nano, to_nano
from slackwater.domain.request import RequestStatus
from slackwater.domain.text import shown
from slackwater.domain.webhooks import BATCH_EVENTS
from slackwater.ports import Page
from slackwater.store import ledger, outbox, queue
from slackwater.store.database import Database
from slackwater.store.schema import batches, files, requests


def _parameters(batch: Batch) -> tuple[Any, ...]:
    """What a create request asked for: a repeated idempotency key must ask the same."""
    return (
        batch.input_file_id,
        batch.endpoint,
        batch.completion_window,
        batch.metadata,
        batch.output_expires_seconds,
    )


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _batch(row: Row[Any]) -> Batch:
    errors = [LineError(**e) for e in json.loads(row.errors)] if row.errors else []
    return Batch(
        id=row.id,
        project=row.project,
        endpoint=row.endpoint,
        input_file_id=row.input_file_id,
        completion_window=row.completion_window,
        status=BatchStatus(row.status),
        outcome=BatchStatus(row.outcome) if row.outcome else None,
        created_at=row.created_at,
        expires_at=row.expires_at,
        metadata=json.loads(row.metadata) if row.metadata else None,
        output_file_id=row.output_file_id,
        error_file_id=row.error_file_id,
        errors=errors,
        request_counts=RequestCounts(row.total, row.completed, row.failed),
        retried_from=row.retried_from,
        cost=from_nano(row.cost_nano),
        realtime_cost=from_nano(row.realtime_nano),
        model=row.model,
        prompt_tokens=int(row.prompt_tokens),
        completion_tokens=int(row.completion_tokens),
        output_expires_seconds=row.output_expires_seconds,
        api=row.api,
        **{column: getattr(row, column) for column in STATUS_TIMESTAMP.values()},
    )


async def read_batch(
    conn: AsyncConnection,
    project: str | None,
    batch_id: str,
    *,
    lock: bool = False,
) -> Batch:
    """The batch, within the caller's transaction; `lock` it for update (PostgreSQL)."""
    query = select(batches).where(batches.c.id == batch_id)
    if project is not None:
        query = query.where(batches.c.project == project)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"No such Batch object: {shown(batch_id)}", param="batch_id")
    return _batch(row)


@dataclass(slots=True)
class Tally:
    """One batch's share of a settlement: results by kind and what they cost."""

    completed: int = 0
    failed: int = 0
    cost_nano: int = 0
    realtime_nano: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


async def charge(conn: AsyncConnection, costs: Sequence[tuple[str, Decimal]]) -> None:
    """Add what failed attempts cost to their batches' totals."""
    totals: dict[str, int] = {}
    for batch_id, cost in costs:
        totals[batch_id] = totals.get(batch_id, 0) + to_nano(cost)
    for batch_id, nano in totals.items():
        if nano:
            await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(cost_nano=batches.c.cost_nano + nano)
            )


async def count_results(conn: AsyncConnection, batch_id: str, tally: Tally) -> None:
    """Add recorded results to a batch's request counts and cost."""
    await conn.execute(
        update(batches)
        .where(batches.c.id == batch_id)
        .values(
            completed=batches.c.completed + tally.completed,
            failed=batches.c.failed + tally.failed,
            cost_nano=batches.c.cost_nano + tally.cost_nano,
            realtime_nano=batches.c.realtime_nano + tally.realtime_nano,
            prompt_tokens=batches.c.prompt_tokens + tally.prompt_tokens,
            completion_tokens=batches.c.completion_tokens + tally.completion_tokens,
        )
    )


class SqlBatches(Database):
    webhooks: bool = False  # the configured `webhook_url` hears every event

    async def add_batch(self, batch: Batch, idempotency_key: str | None = None) -> Batch:
        values = {
            "id": batch.id,
            "project": batch.project,
            "endpoint": batch.endpoint,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": batch.status.value,
            "metadata": _dumps(batch.metadata),
            "total": 0,
            "completed": 0,
            "failed": 0,
            "created_at": batch.created_at,
            "expires_at": batch.expires_at,
            "idempotency_key": idempotency_key,
            "retried_from": batch.retried_from,
            "output_expires_seconds": batch.output_expires_seconds,
            "api": batch.api,
        }
        try:
            async with self.writing() as conn:
                await conn.execute(insert(batches).values(**values))
                return await read_batch(conn, None, batch.id)
        except IntegrityError:
            if idempotency_key is None:
                raise
        async with self.reading() as conn:
            row = (
                await conn.execute(
                    select(batches).where(
                        batches.c.project == batch.project,
                        batches.c.idempotency_key == idempotency_key,
                    )
                )
            ).first()
        if row is None:  # pragma: no cover - the conflicting row was deleted meanwhile
            raise NotFound("no batch for this idempotency key")
        first = _batch(row)
        if _parameters(first) != _parameters(batch):
            raise IdempotencyMismatch(
                f"Idempotency-Key {shown(idempotency_key)!r} was first used to create batch "
                f"{first.id} with other parameters; use a new key for a different request",
                param="Idempotency-Key",
            )
        return first

    async def get_batch(self, project: str | None, batch_id: str) -> Batch:
        async with self.reading() as conn:
            return await read_batch(conn, project, batch_id)

    async def list_batches(
        self, project: str, *, limit: int, after: str | None, api: str | None = None
    ) -> Page:
        query = select(batches).where(batches.c.project == project)
        if api is not None:
            query = query.where(batches.c.api == api)
        return await self.page(query, batches.c.id, limit=limit, after=after, convert=_batch)

    async def batch_ids_in(self, status: BatchStatus, *, settled: bool = False) -> list[str]:
        query = (
            select(batches.c.id)
            .where(batches.c.status == status.value)
            .order_by(batches.c.expires_at)
        )
        if settled:
            query = query.where(batches.c.completed + batches.c.failed >= batches.c.total)
        async with self.reading() as conn:
            return list((await conn.execute(query)).scalars())

    async def move_batch(
        self,
        batch_id: str,
        new: BatchStatus,
        now: datetime,
        *,
        errors: Sequence[LineError] = (),
        outcome: BatchStatus | None = None,
        output_file_id: str | None = None,
        error_file_id: str | None = None,
    ) -> Batch:
        async with self.writing() as conn:
            batch = await read_batch(conn, None, batch_id, lock=True)
            check_transition(batch_id, batch.status, new)
            values: dict[str, Any] = {"status": new.value, STATUS_TIMESTAMP[new]: now}
            if errors:
                values["errors"] = json.dumps([e.__dict__ for e in errors])
            if outcome is not None:
                values["outcome"] = outcome.value
            if output_file_id is not None:
                values["output_file_id"] = output_file_id
            if error_file_id is not None:
                values["error_file_id"] = error_file_id
            await conn.execute(update(batches).where(batches.c.id == batch_id).values(**values))
            if new in (BatchStatus.CANCELLING, BatchStatus.FAILED):
                # Nothing not yet started will run now.
                await queue.close_unstarted(conn, batch_id, RequestStatus.CANCELLED, now)
            if new in BATCH_EVENTS:
                await outbox.enqueue(
                    conn, batch.project, batch_id, BATCH_EVENTS[new], now, configured=self.webhooks
                )
            return await read_batch(conn, None, batch_id)

    async def request_statuses(self, batch_id: str) -> dict[str, int]:
        query = (
            select(requests.c.status, func.count())
            .where(requests.c.batch_id == batch_id)
            .group_by(requests.c.status)
        )
        async with self.reading() as conn:
            return {status: int(n) for status, n in (await conn.execute(query)).all()}

    async def delete_batch(self, project: str, batch_id: str) -> Batch:
        async with self.writing() as conn:
            batch = await read_batch(conn, project, batch_id, lock=True)
            if not batch.status.is_terminal:
                raise Conflict(
                    f"batch {batch_id} is {batch.status.value}; cancel it, then delete it"
                )
            # What it cost stays in the ledger's totals.
            await ledger.fold_unrolled(conn, requests.c.batch_id == batch_id)
            await conn.execute(delete(requests).where(requests.c.batch_id == batch_id))
            await conn.execute(delete(batches).where(batches.c.id == batch_id))
        return batch

    async def batch_outcomes(self, project: str | None = None) -> dict[str, int]:
        query = select(batches.c.status, func.count()).group_by(batches.c.status)
        if project is not None:
            query = query.where(batches.c.project == project)
        async with self.reading() as conn:
            return {status: n for status, n in (await conn.execute(query)).all()}

    async def open_requests(self, project: str) -> int:
        running = select(
            func.coalesce(func.sum(batches.c.total - batches.c.completed - batches.c.failed), 0)
        ).where(
            batches.c.project == project,
            batches.c.status.in_([BatchStatus.IN_PROGRESS.value, BatchStatus.CANCELLING.value]),
        )
        validating = (
            select(func.coalesce(func.sum(files.c.lines), 0))
            .select_from(batches.join(files, files.c.id == batches.c.input_file_id))
            .where(
                batches.c.project == project,
                batches.c.status == BatchStatus.VALIDATING.value,
            )
        )
        async with self.reading() as conn:
            return int((await conn.execute(running)).scalar_one()) + int(
                (await conn.execute(validating)).scalar_one()
            )
