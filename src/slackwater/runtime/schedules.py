"""The scheduler: turns schedules' due run times into dataset jobs.

Each due schedule gets one job for its latest due time, with the next run time as its
deadline (the window the planner may use); earlier due times that passed while no
scheduler ran are recorded as missed runs. A run that cannot start (its table gone, its
columns changed) is recorded as a failed run naming why. Recording the runs and moving
the schedule on are one step in the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from slackwater.domain import schedules
from slackwater.domain.errors import InvalidRequest
from slackwater.domain.ids import new_id
from slackwater.domain.predictions import JobStatus, PredictionJob, TableFormat
from slackwater.domain.schedules import Schedule
from slackwater.ports import Clock, ScheduleStore
from slackwater.runtime.datasets import OUTPUTS, DatasetRunner
from slackwater.runtime.loops import run_until

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        store: ScheduleStore,
        datasets: DatasetRunner,
        clock: Clock,
        *,
        poll_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.datasets = datasets
        self.clock = clock
        self.poll_seconds = poll_seconds

    async def create(
        self,
        project: str,
        model: str,
        source: str,
        key: str,
        *,
        every_seconds: float | None = None,
        cron: str | None = None,
        output: str = "predict",
        keep: Sequence[str] = (),
        chunk_rows: int = 65_536,
    ) -> Schedule:
        """A schedule whose first run is due at once (checked now, as a job would be)."""
        schedules.check(every_seconds, cron)
        if output not in OUTPUTS:
            raise InvalidRequest(f"output must be one of {', '.join(OUTPUTS)}", param="output")
        now = self.clock()
        job = await self.datasets.prepare(
            project, model, source, key, output=output, keep=keep, chunk_rows=chunk_rows,
            deadline=now,
        )  # fmt: skip
        schedule = Schedule(
            id=new_id("sched"),
            project=project,
            model=job.model,
            source=job.source,
            key=key,
            keep=tuple(keep),
            output=output,
            chunk_rows=chunk_rows,
            every_seconds=every_seconds,
            cron=cron,
            next_run_at=now,
            created_at=now,
        )
        await self.store.add_schedule(schedule)
        return schedule

    async def tick(self) -> int:
        """Start the runs now due; how many jobs were queued."""
        queued = 0
        now = self.clock()
        for schedule in await self.store.due_schedules(now):
            times, next_run_at = schedules.due(schedule, now)
            if not times:
                continue
            missed = times[:-1]  # the latest due time runs; earlier ones passed unrun
            jobs = [self._missed(schedule, at) for at in missed]
            run = await self._run(schedule, next_run_at)
            jobs.append(run)
            if await self.store.start_runs(schedule, next_run_at, jobs):
                queued += run.status is JobStatus.QUEUED
                if missed:
                    log.warning("schedule %s missed %d runs", schedule.id, len(missed))
        if queued:
            self.datasets.wake()
        return queued

    async def _run(self, schedule: Schedule, deadline: datetime) -> PredictionJob:
        try:
            return await self.datasets.prepare(
                schedule.project,
                schedule.model,
                schedule.source,
                schedule.key,
                output=schedule.output,
                keep=schedule.keep,
                chunk_rows=schedule.chunk_rows,
                deadline=deadline,
                schedule_id=schedule.id,
            )
        except InvalidRequest as exc:  # a run that cannot start is a failed run, not silence
            failed = self._missed(schedule, self.clock())
            error = {"message": exc.message, "param": exc.param, "file": schedule.source}
            return replace(failed, status=JobStatus.FAILED, error=error)

    def _missed(self, schedule: Schedule, at: datetime) -> PredictionJob:
        now = self.clock()
        return PredictionJob(
            id=new_id("pjob"),
            project=schedule.project,
            model=schedule.model,
            source=schedule.source,
            format=TableFormat.of(schedule.source) or TableFormat.CSV,
            key=schedule.key,
            keep=schedule.keep,
            output=schedule.output,
            chunk_rows=schedule.chunk_rows,
            status=JobStatus.MISSED,
            created_at=now,
            deadline=at,
            schedule_id=schedule.id,
            finished_at=now,
        )

    async def run(self, stopping: asyncio.Event) -> None:
        # Nothing wakes it early: a schedule's time is a clock's, looked at every poll.
        idle = asyncio.Event()
        await run_until(stopping, idle, self.poll_seconds, self._tick_idle, "starting runs")

    async def _tick_idle(self) -> None:
        await self.tick()  # then wait for the next poll, whatever it started
