"""Dataset jobs (`/v1/prediction_jobs`) and precomputed predictions by key
(`GET /v1/predictions/{model}/{key}`). Online predictions (`POST /v1/predictions`) are
with the other inference endpoints (api/inference.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from slackwater.api.deps import Project, services
from slackwater.api.inference import JsonBody
from slackwater.api.schemas import list_json, optional_text, text_field
from slackwater.domain.clock import parse_completion_window, parse_duration, to_unix
from slackwater.domain.errors import InvalidRequest, NotFound
from slackwater.domain.files import FilePurpose
from slackwater.domain.predictions import JobStatus, PredictionJob, TableFormat
from slackwater.domain.schedules import Schedule
from slackwater.domain.text import shown
from slackwater.runtime.services import Services

router = APIRouter(prefix="/v1", tags=["predictions"])
Svc = Annotated[Services, Depends(services)]
MEDIA = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def job_json(job: PredictionJob, cost: Decimal | None = None) -> dict[str, Any]:
    duration = (
        (job.finished_at - job.started_at).total_seconds()
        if job.finished_at and job.started_at
        else None
    )
    return {
        "id": job.id,
        "object": "prediction_job",
        "model": job.model,
        "dataset": job.source,
        "format": job.format.value,
        "key": job.key,
        "keep": list(job.keep),
        "output": job.output,
        "chunk_rows": job.chunk_rows,
        "status": job.status.value,
        "progress": {
            "chunks": job.chunks_done,
            "rows": job.rows_done,
            "total_rows": job.total_rows,
        },
        "compute_seconds": round(job.compute_seconds, 6),
        "duration_seconds": round(duration, 3) if duration is not None else None,
        "cost_usd": str(cost) if cost is not None else None,
        "error": job.error,
        "schedule_id": job.schedule_id,
        "created_at": to_unix(job.created_at),
        "started_at": to_unix(job.started_at),
        "finished_at": to_unix(job.finished_at),
        "deadline": to_unix(job.deadline),
        "output_url": f"/v1/prediction_jobs/{job.id}/output" if job.result else None,
    }


def _columns(body: dict[str, Any]) -> list[str]:
    """The body's `keep`: columns copied to a job's output."""
    keep = body.get("keep") or []
    if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
        raise InvalidRequest("'keep' must be a list of column names", param="keep")
    return keep


async def dataset_of(svc: Services, project: str, name: str) -> tuple[str, TableFormat | None]:
    """A table the API may read: a file the project uploaded (`file_…`, purpose
    `user_data`, named .csv or .parquet), or one under the server's datasets directory."""
    if name.startswith("file_"):
        file = await svc.files.get(project, name)
        fmt = TableFormat.of(file.filename)
        if file.purpose != FilePurpose.USER_DATA or fmt is None:
            raise InvalidRequest(
                f"file {name} is not a table: upload a .csv or .parquet file with purpose "
                "'user_data'",
                param="dataset",
            )
        return svc.blobs.path(file.id), fmt
    return dataset_path(svc, name), None


def dataset_path(svc: Services, name: str) -> str:
    """A dataset the API may read: a file under the server's datasets directory, or an
    object under one of its `dataset_uris` prefixes."""
    if "://" in name:
        allowed = any(name.startswith(prefix) for prefix in svc.dataset_uris)
        # A query string could point the server's credentials at another endpoint.
        if not allowed or "?" in name or "/../" in name:
            raise InvalidRequest(
                f"dataset {shown(name)!r} is not under the server's dataset_uris", param="dataset"
            )
        return name
    root = svc.datasets_dir.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise InvalidRequest(
            f"dataset {shown(name)!r} is outside the server's datasets directory", param="dataset"
        )
    return str(path)


@router.post("/prediction_jobs")
async def create_job(body: JsonBody, project: Project, svc: Svc) -> dict[str, Any]:
    """Run a model over a table: `{"model", "dataset" (a file in the server's datasets
    directory), "key" (the column naming each row), "output"?, "keep"?, "chunk_rows"?,
    "completion_window"?}`."""
    keep = _columns(body)
    chunk_rows = body.get("chunk_rows", 65_536)
    if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool):
        raise InvalidRequest("'chunk_rows' must be an integer", param="chunk_rows")
    window = parse_completion_window(str(body.get("completion_window") or "24h"))
    source, fmt = await dataset_of(svc, project, text_field(body, "dataset"))
    job = await svc.datasets.submit(
        project,
        text_field(body, "model"),
        source,
        text_field(body, "key"),
        fmt=fmt,
        output=optional_text(body, "output") or "predict",
        keep=keep,
        chunk_rows=chunk_rows,
        window_seconds=window.total_seconds(),
    )
    return job_json(job, svc.datasets.cost(job))


@router.get("/prediction_jobs")
async def list_jobs(
    project: Project,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> dict[str, Any]:
    page = await svc.store.list_jobs(project, limit=limit, after=after)
    return list_json(page, lambda job: job_json(job, svc.datasets.cost(job)))


@router.get("/prediction_jobs/{job_id}")
async def get_job(job_id: str, project: Project, svc: Svc) -> dict[str, Any]:
    job = await svc.store.get_job(project, job_id)
    return job_json(job, svc.datasets.cost(job))


@router.post("/prediction_jobs/{job_id}/cancel")
async def cancel_job(job_id: str, project: Project, svc: Svc) -> dict[str, Any]:
    job = await svc.store.cancel_job(project, job_id, svc.clock())
    return job_json(job, svc.datasets.cost(job))


@router.get("/prediction_jobs/{job_id}/output", response_model=None)
async def job_output(job_id: str, project: Project, svc: Svc) -> FileResponse:
    job = await svc.store.get_job(project, job_id)
    if job.status is not JobStatus.COMPLETED or job.result is None:
        raise InvalidRequest(
            f"job {job_id} is {job.status.value}: its output comes when it completes",
            param="job_id",
        )
    return FileResponse(
        Path(svc.blobs.path(job.result)),
        media_type=MEDIA[job.format.value],
        filename=f"{job.id}.{job.format.value}",
    )


@router.get("/predictions/{model}/{key}")
async def precomputed(
    model: str,
    key: str,
    _: Project,
    svc: Svc,
    max_age: Annotated[float | None, Query(gt=0, description="Seconds; older is stale")] = None,
) -> dict[str, Any]:
    """The model's precomputed prediction for `key`, from its last completed job:
    `status` is `present`, or `stale` when older than `max_age` seconds."""
    found = svc.catalog.find(model)
    if found is None:
        raise NotFound(f"The model '{shown(model)}' does not exist", param="model")
    hit = await svc.store.precomputed(found.name, key)
    svc.metrics.looked_up(found.name, precomputed=int(hit is not None), online=0,
                          missing=int(hit is None))  # fmt: skip
    if hit is None:
        raise NotFound(
            f"No precomputed prediction of {found.name} for key '{shown(key)}'",
            param="key",
        )
    age = svc.clock() - hit.computed_at
    stale = max_age is not None and age > timedelta(seconds=max_age)
    return {
        "object": "precomputed_prediction",
        "model": found.name,
        "key": key,
        "status": "stale" if stale else "present",
        "prediction": hit.value,
        "computed_at": to_unix(hit.computed_at),
        "age_seconds": round(age.total_seconds(), 3),
        "job_id": hit.version,
    }


def schedule_json(schedule: Schedule, runs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    shown_runs: dict[str, Any] = {}
    if runs is not None:
        shown_runs["runs"] = runs
        shown_runs["missed_runs"] = sum(r["status"] == "missed" for r in runs)
    return {
        "id": schedule.id,
        "object": "prediction_schedule",
        "model": schedule.model,
        "dataset": schedule.source,
        "key": schedule.key,
        "keep": list(schedule.keep),
        "output": schedule.output,
        "chunk_rows": schedule.chunk_rows,
        "every_seconds": schedule.every_seconds,
        "cron": schedule.cron,
        "next_run_at": to_unix(schedule.next_run_at),
        "created_at": to_unix(schedule.created_at),
        **shown_runs,
    }


@router.post("/prediction_schedules")
async def create_schedule(body: JsonBody, project: Project, svc: Svc) -> dict[str, Any]:
    """A dataset job on a window: the job's fields, and `"every": "1h"` or `"cron":
    "0 * * * *"`. Its first run is due at once."""
    keep = _columns(body)
    every = optional_text(body, "every")
    schedule = await svc.scheduler.create(
        project,
        text_field(body, "model"),
        dataset_path(svc, text_field(body, "dataset")),
        text_field(body, "key"),
        every_seconds=parse_duration(every, "every").total_seconds() if every else None,
        cron=optional_text(body, "cron"),
        output=optional_text(body, "output") or "predict",
        keep=keep,
    )
    return schedule_json(schedule)


@router.get("/prediction_schedules")
async def list_schedules(
    project: Project,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> dict[str, Any]:
    page = await svc.store.list_schedules(project, limit=limit, after=after)
    return list_json(page, schedule_json)


@router.get("/prediction_schedules/{schedule_id}")
async def get_schedule(schedule_id: str, project: Project, svc: Svc) -> dict[str, Any]:
    """The schedule and its last runs (status, duration, cost; missed ones too)."""
    schedule = await svc.store.get_schedule(project, schedule_id)
    runs = await svc.store.schedule_runs(schedule.id, 50)
    return schedule_json(schedule, [job_json(r, svc.datasets.cost(r)) for r in runs])


@router.delete("/prediction_schedules/{schedule_id}")
async def delete_schedule(schedule_id: str, project: Project, svc: Svc) -> dict[str, Any]:
    await svc.store.delete_schedule(project, schedule_id)
    return {"id": schedule_id, "object": "prediction_schedule.deleted", "deleted": True}
