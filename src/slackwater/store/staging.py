"""Staging: intake's claim on a validating batch, its staged rows, and activation.

Rows are written as `staged` while the file is checked, and turned `pending` in one
transaction once every line passed, so a batch is accepted whole or not at all
(docs/decisions/0003-staged-requests.md). On PostgreSQL rows are written with COPY
(docs/decisions/0009-copy-staging.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update

from slackwater.domain.batch import Batch, BatchStatus, check_transition
from slackwater.domain.request import RequestStatus
from slackwater.policy import fairness
from slackwater.ports import StagedRequest
from slackwater.store import fair
from slackwater.store.batches import read_batch
from slackwater.store.database import Database, status_is
from slackwater.store.schema import batches, requests

# The columns a staged row shares with its batch; the rest are the StagedRequest's own
# fields, named as their columns.
_BATCH_COLUMNS = (
    "batch_id", "endpoint", "project", "deadline", "urgency", "status", "attempts", "fair_rank",
)  # fmt: skip
STAGED_COLUMNS = (*_BATCH_COLUMNS, *StagedRequest._fields)


class SqlStaging(Database):
    async def claim_intake(self, batch_id: str, owner: str, now: datetime, seconds: float) -> bool:
        async with self.writing() as conn:
            result = await conn.execute(
                update(batches)
                .where(
                    batches.c.id == batch_id,
                    batches.c.status == BatchStatus.VALIDATING.value,
                    or_(
                        batches.c.intake_owner.is_(None),
                        batches.c.intake_owner == owner,
                        batches.c.intake_until < now,
                    ),
                )
                .values(intake_owner=owner, intake_until=now + timedelta(seconds=seconds))
            )
            return bool(result.rowcount)

    async def stage_requests(self, batch: Batch, rows: Sequence[StagedRequest]) -> None:
        if not rows:
            return
        shared = (
            batch.id,
            batch.endpoint,
            batch.project,
            self.time(batch.expires_at),
            fairness.urgency(batch.expires_at),
            RequestStatus.STAGED.value,
            0,  # attempts
            0,  # fair_rank: numbered at activation
        )
        records = [shared + row for row in rows]
        async with self.writing() as conn:
            if self.dialect == "postgresql":
                # COPY: about 3x an INSERT per row on PostgreSQL. The chunk is one
                # statement, so it is written whole or not at all.
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                await driver.copy_records_to_table(
                    "requests", records=records, columns=STAGED_COLUMNS
                )
                return
            await self.executemany(
                conn,
                f"INSERT INTO requests ({', '.join(STAGED_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(STAGED_COLUMNS))})",
                records,
            )

    async def drop_staged(self, batch_id: str) -> None:
        staged = (requests.c.batch_id == batch_id, status_is(RequestStatus.STAGED))
        if not await self.any_request(*staged):
            return  # the usual case: an intake starting on a new batch
        async with self.writing() as conn:
            await conn.execute(delete(requests).where(*staged))

    async def activate(self, batch_id: str, now: datetime) -> Batch:
        staged = (requests.c.batch_id == batch_id, status_is(RequestStatus.STAGED))
        async with self.writing() as conn:
            batch = await read_batch(conn, None, batch_id, lock=True)
            check_transition(batch_id, batch.status, BatchStatus.IN_PROGRESS)
            last_line = (
                await conn.execute(select(func.max(requests.c.line)).where(*staged))
            ).scalar() or 0
            models = (
                await conn.execute(select(requests.c.model).where(*staged).distinct().limit(2))
            ).scalars()
            shared = list(models)
            start = fairness.batch_start(
                await fair.project_next(conn, batch.project), await fair.virtual_time(conn)
            )
            await fair.set_project_next(
                conn, batch.project, fairness.project_next(start, last_line)
            )
            result = await conn.execute(
                update(requests)
                .where(*staged)
                .values(
                    status=RequestStatus.PENDING.value,
                    fair_rank=requests.c.line + start,
                )
            )
            await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id)
                .values(
                    status=BatchStatus.IN_PROGRESS.value,
                    in_progress_at=now,
                    total=result.rowcount,
                    model=shared[0] if len(shared) == 1 else None,
                )
            )
            return await read_batch(conn, None, batch_id)
