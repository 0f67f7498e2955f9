"""Dataset jobs, their recorded chunks, and precomputed predictions by key.

A runner takes a due job (`claim_job`: queued, or running with a lease run out) and
holds it by a lease; a chunk's predictions, its row in `prediction_chunks` and the job's
progress are written in one transaction, and only while the runner still holds the
job, so a chunk is recorded once however often a crash makes it run. Completing the job
makes its version of the model's predictions the one readers see, in the same
transaction that deletes the older versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from slackwater.domain.errors import NotFound
from slackwater.domain.predictions import (
    Chunk,
    JobStatus,
    OpenJob,
    Precomputed,
    PredictionJob,
    TableFormat,
)
from slackwater.domain.text import shown
from slackwater.ports import Page
from slackwater.store.database import Database
from slackwater.store.schema import (
    prediction_chunks,
    prediction_jobs,
    prediction_versions,
    predictions,
)

_LIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
_CACHE_SQL = (
    "INSERT INTO predictions (model, version, key, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (model, version, key) DO UPDATE SET value = excluded.value"
)


def job_of(row: Any) -> PredictionJob:
    return PredictionJob(
        id=row.id,
        project=row.project,
        model=row.model,
        source=row.source,
        format=TableFormat(row.format),
        key=row.key,
        keep=tuple(orjson.loads(row.keep)),
        output=row.output,
        chunk_rows=row.chunk_rows,
        status=JobStatus(row.status),
        created_at=row.created_at,
        deadline=row.deadline,
        schedule_id=row.schedule_id,
        rows_done=row.rows_done,
        chunks_done=row.chunks_done,
        total_rows=row.total_rows,
        estimated_rows=row.estimated_rows,
        compute_seconds=row.compute_us / 1_000_000,
        error=orjson.loads(row.error) if row.error else None,
        owner=row.owner,
        started_at=row.started_at,
        finished_at=row.finished_at,
        result=row.result,
    )


def _owned(job_id: str, owner: str) -> Any:
    return and_(
        prediction_jobs.c.id == job_id,
        prediction_jobs.c.owner == owner,
        prediction_jobs.c.status == JobStatus.RUNNING.value,
    )


async def add_job(conn: AsyncConnection, job: PredictionJob) -> None:
    await conn.execute(
        insert(prediction_jobs).values(
            id=job.id,
            project=job.project,
            model=job.model,
            source=job.source,
            format=job.format.value,
            key=job.key,
            keep=orjson.dumps(list(job.keep)).decode(),
            output=job.output,
            chunk_rows=job.chunk_rows,
            status=job.status.value,
            schedule_id=job.schedule_id,
            error=orjson.dumps(job.error).decode() if job.error else None,
            estimated_rows=job.estimated_rows,
            deadline=job.deadline,
            created_at=job.created_at,
            finished_at=job.finished_at,
        )
    )


class SqlPredictions(Database):
    async def add_job(self, job: PredictionJob) -> None:
        async with self.writing() as conn:
            await add_job(conn, job)

    async def get_job(self, project: str | None, job_id: str) -> PredictionJob:
        query = select(prediction_jobs).where(prediction_jobs.c.id == job_id)
        if project is not None:
            query = query.where(prediction_jobs.c.project == project)
        async with self.reading() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"No prediction job with id '{shown(job_id)}'", param="job_id")
        return job_of(row)

    async def list_jobs(self, project: str, *, limit: int, after: str | None) -> Page:
        query = select(prediction_jobs).where(prediction_jobs.c.project == project)
        return await self.page(
            query, prediction_jobs.c.id, limit=limit, after=after, convert=job_of
        )

    async def claim_job(
        self,
        owner: str,
        now: datetime,
        lease_seconds: float,
        models: Sequence[str],
        job_id: str | None = None,
        among: Sequence[str] | None = None,
    ) -> PredictionJob | None:
        """The due job whose deadline is nearest (queued, or its runner's lease run out);
        with `job_id`, that job if it is due; with `among`, one of those."""
        due = (
            select(prediction_jobs.c.id)
            .where(
                prediction_jobs.c.model.in_(list(models)),
                or_(
                    prediction_jobs.c.status == JobStatus.QUEUED.value,
                    and_(
                        prediction_jobs.c.status == JobStatus.RUNNING.value,
                        prediction_jobs.c.lease_expires_at <= now,
                    ),
                ),
            )
            .order_by(prediction_jobs.c.deadline)
            .limit(1)
        )
        if job_id is not None:
            due = due.where(prediction_jobs.c.id == job_id)
        if among is not None:
            due = due.where(prediction_jobs.c.id.in_(list(among)))
        if self.skip_locked:
            due = due.with_for_update(skip_locked=True)
        async with self.writing() as conn:
            found = (await conn.execute(due)).first()
            if found is None:
                return None
            await conn.execute(
                update(prediction_jobs)
                .where(prediction_jobs.c.id == found.id)
                .values(
                    status=JobStatus.RUNNING.value,
                    owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    started_at=func.coalesce(prediction_jobs.c.started_at, now),
                )
            )
            row = (
                await conn.execute(select(prediction_jobs).where(prediction_jobs.c.id == found.id))
            ).one()
        return job_of(row)

    async def hold_job(self, job_id: str, owner: str, now: datetime, lease_seconds: float) -> bool:
        async with self.writing() as conn:
            result = await conn.execute(
                update(prediction_jobs)
                .where(_owned(job_id, owner))
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
            )
        return bool(result.rowcount)

    async def recorded_chunks(self, job_id: str) -> set[int]:
        query = select(prediction_chunks.c.seq).where(prediction_chunks.c.job_id == job_id)
        async with self.reading() as conn:
            return {seq for (seq,) in (await conn.execute(query)).all()}

    async def predicted_keys(self, job: PredictionJob) -> frozenset[str]:
        query = select(predictions.c.key).where(
            predictions.c.model == job.model, predictions.c.version == job.id
        )
        async with self.reading() as conn:
            return frozenset(key for (key,) in (await conn.execute(query)).all())

    async def record_chunk(
        self, job: PredictionJob, owner: str, chunk: Chunk, now: datetime, lease_seconds: float
    ) -> bool:
        """The chunk's predictions, its record and the job's progress, at once; False
        (nothing written) if `owner` no longer holds the job."""
        async with self.writing() as conn:
            moved = await conn.execute(
                update(prediction_jobs)
                .where(_owned(job.id, owner))
                .values(
                    rows_done=prediction_jobs.c.rows_done + chunk.rows,
                    chunks_done=prediction_jobs.c.chunks_done + 1,
                    compute_us=prediction_jobs.c.compute_us
                    + round(chunk.compute_seconds * 1_000_000),
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                )
            )
            if not moved.rowcount:
                return False
            await conn.execute(
                insert(prediction_chunks).values(
                    job_id=job.id,
                    seq=chunk.seq,
                    rows=chunk.rows,
                    compute_us=round(chunk.compute_seconds * 1_000_000),
                )
            )
            if chunk.values:
                # The driver's own executemany: a chunk is tens of thousands of rows. A
                # key seen twice in a table keeps its last prediction.
                await self.executemany(
                    conn,
                    _CACHE_SQL,
                    [(job.model, job.id, key, value) for key, value in chunk.values],
                )
        return True

    async def end_job(
        self,
        job: PredictionJob,
        owner: str,
        status: JobStatus,
        now: datetime,
        *,
        total_rows: int | None = None,
        result: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """End the job; completed, its predictions become the model's current ones and
        the older versions are deleted, in the same transaction."""
        async with self.writing() as conn:
            ended = await conn.execute(
                update(prediction_jobs)
                .where(_owned(job.id, owner))
                .values(
                    status=status.value,
                    owner=None,
                    lease_expires_at=None,
                    total_rows=total_rows,
                    result=result,
                    error=orjson.dumps(error).decode() if error else None,
                    finished_at=now,
                )
            )
            if not ended.rowcount:
                return False
            if status is JobStatus.COMPLETED:
                await self._swap(conn, job.model, job.id, now)
            else:
                await conn.execute(
                    delete(predictions).where(
                        predictions.c.model == job.model, predictions.c.version == job.id
                    )
                )
        return True

    async def _swap(self, conn: AsyncConnection, model: str, version: str, now: datetime) -> None:
        await conn.execute(
            self.upsert(prediction_versions)
            .values(model=model, version=version, computed_at=now)
            .on_conflict_do_update(
                index_elements=["model"], set_={"version": version, "computed_at": now}
            )
        )
        # Older versions go; a job still running keeps its own rows until it ends.
        running = select(prediction_jobs.c.id).where(
            prediction_jobs.c.model == model, prediction_jobs.c.status.in_(_LIVE)
        )
        await conn.execute(
            delete(predictions).where(
                predictions.c.model == model,
                predictions.c.version != version,
                predictions.c.version.not_in(running),
            )
        )

    async def cancel_job(self, project: str, job_id: str, now: datetime) -> PredictionJob:
        async with self.writing() as conn:
            await conn.execute(
                update(prediction_jobs)
                .where(
                    prediction_jobs.c.id == job_id,
                    prediction_jobs.c.project == project,
                    prediction_jobs.c.status.in_(_LIVE),
                )
                .values(
                    status=JobStatus.CANCELLED.value,
                    owner=None,
                    lease_expires_at=None,
                    finished_at=now,
                )
            )
        return await self.get_job(project, job_id)

    async def open_jobs(self) -> list[OpenJob]:
        async with self.reading() as conn:
            jobs = (
                await conn.execute(
                    select(prediction_jobs).where(prediction_jobs.c.status.in_(_LIVE))
                )
            ).all()
            if not jobs:
                return []
            past = (
                await conn.execute(
                    select(
                        prediction_jobs.c.model,
                        func.sum(prediction_jobs.c.compute_us),
                        func.sum(prediction_jobs.c.rows_done),
                    )
                    .where(prediction_jobs.c.status == JobStatus.COMPLETED.value)
                    .group_by(prediction_jobs.c.model)
                )
            ).all()
        measured = {m: us / 1e6 / rows for m, us, rows in past if rows}
        out = []
        for row in jobs:
            size = row.total_rows or row.estimated_rows or row.chunk_rows
            own = row.compute_us / 1e6 / row.rows_done if row.rows_done else None
            out.append(
                OpenJob(
                    id=row.id,
                    model=row.model,
                    deadline=row.deadline,
                    rows_left=max(size - row.rows_done, 1),
                    seconds_per_row=own or measured.get(row.model),
                )
            )
        return out

    async def precomputed(self, model: str, key: str) -> Precomputed | None:
        """The model's current prediction for `key` (None: no current version has it)."""
        return (await self.precomputed_many(model, [key])).get(key)

    async def precomputed_many(self, model: str, keys: Sequence[str]) -> dict[str, Precomputed]:
        """The model's current predictions for those of `keys` it has."""
        if not keys:
            return {}
        query = (
            select(
                predictions.c.key,
                predictions.c.value,
                prediction_versions.c.computed_at,
                predictions.c.version,
                prediction_jobs.c.output,
            )
            .select_from(
                prediction_versions.join(
                    predictions,
                    and_(
                        predictions.c.model == prediction_versions.c.model,
                        predictions.c.version == prediction_versions.c.version,
                    ),
                ).join(prediction_jobs, prediction_jobs.c.id == predictions.c.version)
            )
            .where(prediction_versions.c.model == model, predictions.c.key.in_(list(set(keys))))
        )
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        return {
            row.key: Precomputed(
                model, row.key, orjson.loads(row.value), row.computed_at, row.version, row.output
            )
            for row in rows
        }
