"""Dataset jobs: a classical model over a CSV or Parquet table, chunk by chunk.

Each chunk is read, predicted in one vectorised call, written as a part file and then
recorded (its predictions by key, its progress) in one transaction; a job resumed after
a crash reads past the chunks it recorded and redoes only the rest. When every chunk is
recorded the parts are joined, in order, into the output table (the input's format,
its key and kept columns, the predictions), and the job's predictions become the ones
`GET /v1/predictions/{model}/{key}` answers from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import orjson

from slackwater.domain.batch import Endpoint
from slackwater.domain.errors import InvalidRequest
from slackwater.domain.ids import new_id
from slackwater.domain.money import NANO
from slackwater.domain.predictions import Chunk, JobStatus, PredictionJob, TableFormat
from slackwater.ports import (
    ArrayPredictor,
    BlobStore,
    Clock,
    PredictionStore,
    ScoredPart,
    TableScorer,
)
from slackwater.runtime import tables
from slackwater.runtime.engines import EngineSet
from slackwater.runtime.loops import run_until
from slackwater.runtime.placement import Placement

log = logging.getLogger(__name__)
OUTPUTS = ("predict", "predict_proba", "embedding", "neighbors")


class DatasetRunner:
    def __init__(
        self,
        store: PredictionStore,
        engines: EngineSet,
        blobs: BlobStore,
        clock: Clock,
        *,
        owner: str | None = None,
        lease_seconds: float = 60.0,
        poll_seconds: float = 1.0,
        price_per_hour: Decimal = Decimal(0),
        placement: Placement | None = None,
        scorer: TableScorer | None = None,
    ) -> None:
        self.store = store
        self.engines = engines
        self.blobs = blobs
        self.clock = clock
        self.owner = owner or new_id("dataw")
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.price_per_hour = price_per_hour  # of the machine the jobs run on
        # On a spot or on-demand pool: the jobs the planner places on this pool now.
        self.placement = placement
        # On a cluster (Ray Data): jobs are read and predicted there, recorded here.
        self.scorer = scorer
        self._woken = asyncio.Event()
        self._stopping = asyncio.Event()  # set: a job in hand stops between chunks
        # Told after each recorded chunk (a progress bar): the job as it stands.
        self.on_progress: Callable[[PredictionJob, int], None] | None = None

    def cost(self, job: PredictionJob) -> Decimal:
        """What the job's compute cost on this machine's pool (billed by the hour)."""
        seconds = Decimal(repr(job.compute_seconds))
        return (self.price_per_hour * seconds / 3600).quantize(NANO)

    def models(self) -> list[str]:
        return [m.name for m in self.engines.catalog.models if m.serves(Endpoint.PREDICTIONS)]

    async def predictor(self, model: str) -> ArrayPredictor:
        engine = await self.engines.engine(model)
        if not isinstance(engine, ArrayPredictor):
            raise InvalidRequest(
                f"model {model} does not run over tables (its engine is {engine.model.engine})",
                param="model",
            )
        return engine

    async def submit(
        self,
        project: str,
        model: str,
        source: str,
        key: str,
        *,
        output: str = "predict",
        keep: Sequence[str] = (),
        chunk_rows: int = 65_536,
        window_seconds: float = 86_400,
        fmt: TableFormat | None = None,
    ) -> PredictionJob:
        """A queued job, once its table and model are known to fit each other."""
        job = await self.prepare(
            project,
            model,
            source,
            key,
            output=output,
            keep=keep,
            chunk_rows=chunk_rows,
            deadline=self.clock() + timedelta(seconds=window_seconds),
            fmt=fmt,
        )
        await self.store.add_job(job)
        self.wake()
        return job

    async def prepare(
        self,
        project: str,
        model: str,
        source: str,
        key: str,
        *,
        output: str,
        keep: Sequence[str],
        chunk_rows: int,
        deadline: datetime,
        schedule_id: str | None = None,
        fmt: TableFormat | None = None,
    ) -> PredictionJob:
        """The job (not stored yet), or InvalidRequest naming what does not fit. `fmt`:
        the table's format, when its path does not say (an uploaded file)."""
        table, table_format = await asyncio.to_thread(tables.located, source, fmt)
        if output not in OUTPUTS:
            raise InvalidRequest(f"output must be one of {', '.join(OUTPUTS)}", param="output")
        if chunk_rows < 1:
            raise InvalidRequest("chunk_rows must be at least 1", param="chunk_rows")
        found = self.engines.model(model)
        if not found.serves(Endpoint.PREDICTIONS):
            raise InvalidRequest(f"model {found.name} does not serve predictions", param="model")
        if self.scorer is not None:  # the model is loaded on the cluster, not here
            named = self.scorer.features(found.name)
        else:
            named = (await self.predictor(found.name)).features
        await asyncio.to_thread(self.features, table, table_format, key, keep, named)
        rows = await asyncio.to_thread(tables.estimated_rows, table, table_format)
        return PredictionJob(
            id=new_id("pjob"),
            project=project,
            model=found.name,
            source=str(table),
            format=table_format,
            key=key,
            keep=tuple(keep),
            output=output,
            chunk_rows=chunk_rows,
            status=JobStatus.QUEUED,
            created_at=self.clock(),
            deadline=deadline,
            schedule_id=schedule_id,
            estimated_rows=rows,
        )

    @staticmethod
    def features(
        table: tables.TableFile,
        fmt: TableFormat,
        key: str,
        keep: Sequence[str],
        named: Sequence[str] | None,
    ) -> list[str]:
        """The columns the model reads: its named features, or (a model that names none)
        every column of the table but the key and the kept ones, in the table's order."""
        columns = tables.columns_of(table, fmt)
        for name, param in [(key, "key"), *((k, "keep") for k in keep)]:
            if name not in columns:
                raise InvalidRequest(f"{table}: no column {name!r}", param=param)
        if not named:
            return [c for c in columns if c != key and c not in keep]
        missing = [f for f in named if f not in columns]
        if missing:
            raise InvalidRequest(
                f"{table}: no column {missing[0]!r}, a feature of the model", param="dataset"
            )
        return list(named)

    def wake(self) -> None:
        self._woken.set()

    async def run_due(self, job_id: str | None = None) -> bool:
        """Take a due job (`job_id`, or the one due soonest) and run it to its end, or
        until another runner takes it."""
        models = self.models()
        if not models:
            return False
        among = await self.placement.allowed() if self.placement is not None else None
        job = await self.store.claim_job(
            self.owner, self.clock(), self.lease_seconds, models, job_id, among
        )
        if job is None:
            return False
        await self.run_job(job)
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        await run_until(
            stopping, self._woken, self.poll_seconds, self.run_due, "running dataset jobs"
        )

    async def run_job(self, job: PredictionJob) -> None:
        try:
            await self._run(job)
        except InvalidRequest as exc:  # the table does not fit the model: the job ends
            error = {"message": exc.message, "param": exc.param, "file": job.source}
            await self.store.end_job(job, self.owner, JobStatus.FAILED, self.clock(), error=error)

    async def _run(self, job: PredictionJob) -> None:
        if self.scorer is not None:
            await self._run_on_cluster(job, self.scorer)
            return
        predictor = await self.predictor(job.model)
        source = tables.TableFile(job.source)
        features = await asyncio.to_thread(
            self.features, source, job.format, job.key, job.keep, predictor.features
        )
        done = await self.store.recorded_chunks(job.id)
        rows_seen = 0
        seq = -1
        reader = tables.chunks(
            source,
            job.format,
            key=job.key,
            keep=job.keep,
            features=features,
            chunk_rows=job.chunk_rows,
        )
        # One chunk is written and recorded while the next is read and predicted: the
        # store's work hides behind the model's. A chunk is recorded only after its part.
        keeping: asyncio.Task[bool] | None = None
        try:
            while (table := await asyncio.to_thread(next, reader, None)) is not None:
                seq += 1
                first = rows_seen
                rows_seen += table.num_rows
                if seq in done:
                    continue
                if self._stopping.is_set():  # shutting down: another runner goes on now
                    if keeping is None or await keeping:
                        await self.store.hold_job(job.id, self.owner, self.clock(), 0)
                    return
                started = time.perf_counter()
                part, values = await asyncio.to_thread(
                    predict_chunk, predictor, table, features=features, job=job, first=first
                )
                spent = time.perf_counter() - started
                if keeping is not None and not await keeping:
                    return
                chunk = Chunk(seq, table.num_rows, spent, values)
                keeping = asyncio.create_task(self._keep(job, chunk, part, rows_seen))
            if keeping is not None and not await keeping:
                return
        finally:
            if keeping is not None and not keeping.done():
                keeping.cancel()
                await asyncio.gather(keeping, return_exceptions=True)
        await self._finish(job, seq + 1, rows_seen)

    async def _keep(self, job: PredictionJob, chunk: Chunk, part: Any, rows_seen: int) -> bool:
        """Write the chunk's part, then record it; False if the job is no longer ours."""
        started = time.perf_counter()
        await asyncio.to_thread(self._write, self._part(job, chunk.seq), part, job.format)
        spent = chunk.compute_seconds + time.perf_counter() - started
        kept = Chunk(chunk.seq, chunk.rows, spent, chunk.values)
        if not await self.store.record_chunk(
            job, self.owner, kept, self.clock(), self.lease_seconds
        ):
            log.info("dataset job %s was cancelled or taken over", job.id)
            return False
        if self.on_progress is not None:
            self.on_progress(job, rows_seen)
        return True

    async def _run_on_cluster(self, job: PredictionJob, scorer: TableScorer) -> None:
        """The job on the cluster: chunks come back predicted, in the table's order, and
        are recorded here as they come. Resumed, the rows whose keys the job has already
        predicted are left out where the table is read, so they are not predicted again."""
        source = tables.TableFile(job.source)
        features = await asyncio.to_thread(
            self.features, source, job.format, job.key, job.keep, scorer.features(job.model)
        )
        done = await self.store.predicted_keys(job)
        seq = max(await self.store.recorded_chunks(job.id), default=-1)
        rows_seen = job.rows_done
        columns = list(dict.fromkeys([job.key, *job.keep, *features]))
        # Features are cast where they are predicted, so a cell that is not a number is
        # named as it is on one machine.
        types = {job.key: "string"}
        work = partial(predict_read_chunk, features=features, job=job)
        parts = scorer.score(
            job.model, job.source, job.format.value, columns, types,
            chunk_rows=job.chunk_rows, key=job.key, skip=done, work=work,
        )  # fmt: skip
        while (scored := await _next_part(job, parts)) is not None:
            if self._stopping.is_set():  # shutting down: another runner goes on now
                await self.store.hold_job(job.id, self.owner, self.clock(), 0)
                return
            seq += 1
            rows_seen += scored.table.num_rows
            chunk = Chunk(seq, scored.table.num_rows, scored.compute_seconds, scored.values)
            if not await self._keep(job, chunk, scored.table, rows_seen):
                return
        await self._finish(job, seq + 1, rows_seen)

    async def _finish(self, job: PredictionJob, parts: int, rows: int) -> None:
        """Every chunk recorded: join the parts into the output; the job completes."""
        result = f"{job.id}.predictions.{job.format.value}"
        await asyncio.to_thread(self._join, job, parts, result)
        if await self.store.end_job(
            job, self.owner, JobStatus.COMPLETED, self.clock(), total_rows=rows, result=result
        ):
            for n in range(parts):
                await self.blobs.delete(self._part(job, n))

    @staticmethod
    def _part(job: PredictionJob, seq: int) -> str:
        return f"{job.id}.part-{seq:06d}.{job.format.value}"

    def _write(self, key: str, table: Any, fmt: TableFormat) -> None:
        with self.blobs.writer(key) as out:
            tables.write(table, fmt, out)

    def _join(self, job: PredictionJob, count: int, result: str) -> None:
        parts = [self.blobs.open(self._part(job, n)) for n in range(count)]
        try:
            with self.blobs.writer(result) as out:
                tables.join(parts, job.format, out)
        finally:
            for part in parts:
                part.close()


def predict_chunk(
    predictor: ArrayPredictor,
    table: Any,
    *,
    features: list[str],
    job: PredictionJob,
    first: int,
) -> tuple[Any, list[tuple[str, str]]]:
    """A chunk's part of the output and its predictions by key (JSON). Module-level: a
    cluster's actors run it too."""
    rows = tables.features_of(table, features)
    try:
        values, classes = predictor.predict_array(job.output, rows)
    except ValueError as exc:
        # Name the row in the table, not in the chunk.
        message = str(exc)
        if message.startswith("row "):
            number, rest = message[4:].split(":", 1)
            message = f"row {first + int(number) + 1}:{rest}"
        raise InvalidRequest(f"{job.source}: {message}") from None
    part = tables.with_outputs(table, job.key, job.keep, job.output, values, classes)
    keys = table.column(job.key).to_pylist()
    listed = values.tolist()
    if job.output == "predict_proba":
        labels = [str(c) for c in classes or range(values.shape[1])]
        cached = [orjson.dumps(dict(zip(labels, v, strict=True))).decode() for v in listed]
    else:
        cached = [orjson.dumps(v).decode() for v in listed]
    return part, [(str(k), v) for k, v in zip(keys, cached, strict=True) if k is not None]


async def _next_part(job: PredictionJob, parts: Iterator[ScoredPart]) -> ScoredPart | None:
    """The cluster's next part, or InvalidRequest with what it found wrong in the table."""
    try:
        return await asyncio.to_thread(next, parts, None)
    except InvalidRequest:
        raise
    except Exception as exc:  # a table's own errors come back as InvalidRequest, above
        root = _root(exc)
        log.warning("dataset job %s failed on the cluster", job.id, exc_info=True)
        raise InvalidRequest(f"{job.source}: {str(root).strip().splitlines()[0]}") from None


def predict_read_chunk(
    predictor: ArrayPredictor, table: Any, *, features: list[str], job: PredictionJob
) -> tuple[Any, list[tuple[str, str]]]:
    """A chunk as a cluster's reader gave it (its types guessed): typed, then predicted."""
    table = tables.typed(table, features, job.key, tables.TableFile(job.source))
    return predict_chunk(predictor, table, features=features, job=job, first=0)


def _root(exc: BaseException) -> BaseException:
    """The first cause of an error the cluster wrapped (Ray wraps a task's error, Ray
    Data its reader's)."""
    seen = {id(exc)}
    while True:
        inner = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
        if not isinstance(inner, BaseException) or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner
