"""Schedules of dataset jobs. Starting a due run and moving the schedule to its next
run time happen in one transaction, conditional on the run time it started from: two
schedulers never start the same run, and a crash never loses or repeats one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update

from slackwater.domain.errors import NotFound
from slackwater.domain.predictions import PredictionJob
from slackwater.domain.schedules import Schedule
from slackwater.domain.text import shown
from slackwater.ports import Page
from slackwater.store.database import Database
from slackwater.store.predictions import add_job, job_of
from slackwater.store.schema import prediction_jobs, prediction_schedules


def _schedule(row: Any) -> Schedule:
    return Schedule(
        id=row.id,
        project=row.project,
        model=row.model,
        source=row.source,
        key=row.key,
        keep=tuple(orjson.loads(row.keep)),
        output=row.output,
        chunk_rows=row.chunk_rows,
        every_seconds=row.every_seconds,
        cron=row.cron,
        next_run_at=row.next_run_at,
        created_at=row.created_at,
    )


class SqlSchedules(Database):
    async def add_schedule(self, schedule: Schedule) -> None:
        async with self.writing() as conn:
            await conn.execute(
                insert(prediction_schedules).values(
                    id=schedule.id,
                    project=schedule.project,
                    model=schedule.model,
                    source=schedule.source,
                    key=schedule.key,
                    keep=orjson.dumps(list(schedule.keep)).decode(),
                    output=schedule.output,
                    chunk_rows=schedule.chunk_rows,
                    every_seconds=schedule.every_seconds,
                    cron=schedule.cron,
                    next_run_at=schedule.next_run_at,
                    created_at=schedule.created_at,
                )
            )

    async def get_schedule(self, project: str | None, schedule_id: str) -> Schedule:
        query = select(prediction_schedules).where(prediction_schedules.c.id == schedule_id)
        if project is not None:
            query = query.where(prediction_schedules.c.project == project)
        async with self.reading() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"No schedule with id '{shown(schedule_id)}'", param="schedule_id")
        return _schedule(row)

    async def list_schedules(self, project: str, *, limit: int, after: str | None) -> Page:
        query = select(prediction_schedules).where(prediction_schedules.c.project == project)
        return await self.page(
            query, prediction_schedules.c.id, limit=limit, after=after, convert=_schedule
        )

    async def delete_schedule(self, project: str, schedule_id: str) -> None:
        async with self.writing() as conn:
            gone = await conn.execute(
                delete(prediction_schedules).where(
                    prediction_schedules.c.id == schedule_id,
                    prediction_schedules.c.project == project,
                )
            )
        if not gone.rowcount:
            raise NotFound(f"No schedule with id '{shown(schedule_id)}'", param="schedule_id")

    async def due_schedules(self, now: datetime) -> list[Schedule]:
        query = select(prediction_schedules).where(prediction_schedules.c.next_run_at <= now)
        async with self.reading() as conn:
            return [_schedule(row) for row in (await conn.execute(query)).all()]

    async def start_runs(
        self, schedule: Schedule, next_run_at: datetime, jobs: Sequence[PredictionJob]
    ) -> bool:
        """Record the schedule's due runs (`jobs`: the missed ones and the one to run) and
        move it to `next_run_at`, if it still stands where `schedule` saw it."""
        async with self.writing() as conn:
            moved = await conn.execute(
                update(prediction_schedules)
                .where(
                    prediction_schedules.c.id == schedule.id,
                    prediction_schedules.c.next_run_at == schedule.next_run_at,
                )
                .values(next_run_at=next_run_at)
            )
            if not moved.rowcount:
                return False
            for job in jobs:
                await add_job(conn, job)
        return True

    async def schedule_runs(self, schedule_id: str, limit: int) -> list[PredictionJob]:
        query = (
            select(prediction_jobs)
            .where(prediction_jobs.c.schedule_id == schedule_id)
            .order_by(prediction_jobs.c.id.desc())
            .limit(limit)
        )
        async with self.reading() as conn:
            return [job_of(row) for row in (await conn.execute(query)).all()]
