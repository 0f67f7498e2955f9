"""Batches API: POST/GET /v1/batches, GET /v1/batches/{id}, POST /v1/batches/{id}/cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query

from slackwater.api.deps import Project, services
from slackwater.api.schemas import CreateBatch, batch_json, list_json
from slackwater.runtime.services import Services

router = APIRouter(prefix="/v1/batches", tags=["batches"])


@router.post("")
async def create_batch(
    body: CreateBatch,
    project: Project,
    svc: Annotated[Services, Depends(services)],
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> dict[str, Any]:
    """Create a batch. A repeated `Idempotency-Key` returns the batch it first created."""
    batch = await svc.batches.create(
        project,
        input_file_id=body.input_file_id,
        endpoint=body.endpoint,
        completion_window=body.completion_window,
        metadata=body.metadata,
        idempotency_key=idempotency_key,
        output_expires_after=body.output_expires_after,
    )
    if svc.monitor is not None:
        svc.monitor.wake()  # validate it now, not at the next tick
    return batch_json(batch)


@router.get("")
async def list_batches(
    project: Project,
    svc: Annotated[Services, Depends(services)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> dict[str, Any]:
    return list_json(await svc.batches.list(project, limit=limit, after=after), batch_json)


@router.get("/{batch_id}")
async def get_batch(
    batch_id: str, project: Project, svc: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    return batch_json(await svc.batches.get(project, batch_id))


@router.post("/{batch_id}/cancel")
async def cancel_batch(
    batch_id: str, project: Project, svc: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    return batch_json(await svc.batches.cancel(project, batch_id))


@router.post("/{batch_id}/retry")
async def retry_batch(
    batch_id: str, project: Project, svc: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    """A new batch of only the lines that failed, were cancelled or expired."""
    batch = await svc.batches.retry(project, batch_id)
    if svc.monitor is not None:
        svc.monitor.wake()
    return batch_json(batch)
