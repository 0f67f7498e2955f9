"""Schedules: a dataset job run on a window (every hour, or a cron expression).

Each run's deadline is the next run's time, so the planner may put it on cheap capacity
as long as it ends before the next begins. A run whose time passed while nothing was
running the scheduler is not run late: the latest due run goes, the earlier ones are
recorded as missed (visible among the schedule's runs, not silently skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from slackwater.domain.errors import InvalidRequest


@dataclass(frozen=True)
class Schedule:
    id: str
    project: str
    model: str
    source: str
    key: str
    output: str
    chunk_rows: int
    next_run_at: datetime
    created_at: datetime
    keep: tuple[str, ...] = ()
    every_seconds: float | None = None
    cron: str | None = None

    @property
    def period(self) -> str:
        return self.cron if self.cron else f"every {self.every_seconds:g} s"


def check(every_seconds: float | None, cron: str | None) -> None:
    if (every_seconds is None) == (cron is None):
        raise InvalidRequest("a schedule has either an interval ('every') or a cron expression")
    if every_seconds is not None and every_seconds < 60:
        raise InvalidRequest("a schedule runs at most once a minute", param="every")
    if cron is not None:
        from croniter import croniter

        if not croniter.is_valid(cron):
            raise InvalidRequest(
                f"{cron!r} is not a cron expression (minute hour day month weekday)",
                param="cron",
            )


def next_after(every_seconds: float | None, cron: str | None, after: datetime) -> datetime:
    """The first run time strictly after `after`."""
    if cron is not None:
        from croniter import croniter

        found: datetime = croniter(cron, after).get_next(datetime)
        return found
    assert every_seconds is not None
    return after + timedelta(seconds=every_seconds)


def due(schedule: Schedule, now: datetime) -> tuple[list[datetime], datetime]:
    """The run times due by `now` (oldest first; the last is the one to run, the others
    were missed) and the next run time after `now`."""
    times = []
    at = schedule.next_run_at
    while at <= now:
        times.append(at)
        at = next_after(schedule.every_seconds, schedule.cron, at)
        if len(times) > 10_000:  # down for ages: keep the recent ones
            times = times[-1000:]
    return times, at
