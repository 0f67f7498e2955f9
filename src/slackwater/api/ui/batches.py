"""Batches: the list (live rows, filters), a batch's page (progress, requests, errors)
and its buttons (cancel, retry failed lines, downloads)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from slackwater.api.ui.common import PAGE, Project, Svc, ago, router, same_origin, templates
from slackwater.domain.batch import Batch, BatchStatus
from slackwater.ports import RequestView
from slackwater.runtime.services import Services


def batch_row(batch: Batch, now: datetime) -> dict[str, Any]:
    counts = batch.request_counts
    done = counts.completed + counts.failed
    return {
        "id": batch.id,
        "status": batch.status.value,
        "endpoint": batch.endpoint,
        "model": batch.model or "mixed",
        "total": counts.total,
        "completed": counts.completed,
        "failed": counts.failed,
        "percent": round(100 * done / counts.total) if counts.total else 0,
        "created": batch.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "deadline": ago(batch.expires_at, now) if not batch.status.is_terminal else "",
        "cost": f"{batch.cost:.6f}",
        "realtime": f"{batch.realtime_cost:.6f}",
        "terminal": batch.status.is_terminal,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "retried_from": batch.retried_from,
    }


def request_row(request: RequestView) -> dict[str, Any]:
    route = orjson.loads(request.route) if request.route else None
    return {
        "line": request.line,
        "custom_id": request.custom_id,
        "model": request.model,
        "status": request.status,
        "attempts": request.attempts,
        "pool": request.pool or "",
        "route": route["reason"] if route else "",
        "escalations": len(route.get("attempts", [])) if route else 0,
        "error": request.error or "",
        "cost": f"{request.cost:.6f}" if request.cost is not None else "",
        "realtime": f"{request.realtime_cost:.6f}" if request.realtime_cost is not None else "",
    }


@dataclass(frozen=True)
class Filters:
    """What the batches page shows: the query string's filters."""

    status: str = ""
    failed: bool = False  # only batches with failed lines
    model: str = ""
    hours: float = 0  # only batches made within this many hours (0: any time)

    def keep(self, batch: Batch, now: datetime) -> bool:
        return (
            (not self.status or batch.status.value == self.status)
            and (not self.failed or batch.request_counts.failed > 0)
            and (not self.model or batch.model == self.model)
            and (not self.hours or now - batch.created_at <= timedelta(hours=self.hours))
        )

    def query(self) -> str:
        shown = {k: v for k, v in asdict(self).items() if v}
        return urlencode({k: "true" if v is True else v for k, v in shown.items()})


async def project_batches(svc: Services, project: str, filters: Filters = Filters()) -> list[Batch]:
    """The project's newest batches that pass the filters (a page of them). Batches are
    listed newest first, so a time filter stops the scan at the first one too old."""
    found: list[Batch] = []
    after = None
    now = svc.clock()
    while len(found) < PAGE:
        page = await svc.batches.list(project, limit=100, after=after)
        for batch in page.items:
            if filters.hours and now - batch.created_at > timedelta(hours=filters.hours):
                return found
            if filters.keep(batch, now):
                found.append(batch)
        if not page.has_more or not page.items:
            break
        after = page.items[-1].id
    return found[:PAGE]


@router.get("/batches", response_class=HTMLResponse)
async def batches_page(
    request: Request,
    project: Project,
    svc: Svc,
    filters: Annotated[Filters, Depends()],
) -> Response:
    rows = [batch_row(b, svc.clock()) for b in await project_batches(svc, project, filters)]
    context = {
        "project": project,
        "rows": rows,
        "filters": filters,
        "filtered": bool(filters.query()),
        "statuses": [s.value for s in BatchStatus],
        "models": [m.name for m in svc.catalog.models],
        "page": "batches",
    }
    return templates.TemplateResponse(request, "batches.html", context)


@router.get("/batches/rows", response_class=HTMLResponse)
async def batch_rows(
    request: Request, project: Project, svc: Svc, filters: Annotated[Filters, Depends()]
) -> Response:
    rows = [batch_row(b, svc.clock()) for b in await project_batches(svc, project, filters)]
    context = {"rows": rows, "filtered": bool(filters.query())}
    return templates.TemplateResponse(request, "_batch_rows.html", context)


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
async def batch_page(
    request: Request,
    batch_id: str,
    project: Project,
    svc: Svc,
    custom_id: Annotated[str, Query(max_length=256)] = "",
    failed: bool = False,
    after: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    batch = await svc.batches.get(project, batch_id)
    found = await svc.store.batch_requests(
        batch.id, after_line=after, limit=PAGE + 1, custom_id=custom_id, failed_only=failed
    )
    context = {
        "project": project,
        "batch": batch_row(batch, svc.clock()),
        "errors": [e.message for e in batch.errors[:20]],
        "requests": [request_row(r) for r in found[:PAGE]],
        "next_after": found[PAGE - 1].line if len(found) > PAGE else None,
        "custom_id": custom_id,
        "failed": failed,
        "page": "batches",
    }
    return templates.TemplateResponse(request, "batch.html", context)


@router.get("/batches/{batch_id}/progress", response_class=HTMLResponse)
async def batch_progress(request: Request, batch_id: str, project: Project, svc: Svc) -> Response:
    batch = await svc.batches.get(project, batch_id)
    row = batch_row(batch, svc.clock())
    return templates.TemplateResponse(request, "_progress.html", {"batch": row})


@router.post("/batches/{batch_id}/cancel")
async def cancel(request: Request, batch_id: str, project: Project, svc: Svc) -> Response:
    same_origin(request)
    await svc.batches.cancel(project, batch_id)
    return RedirectResponse(f"/ui/batches/{batch_id}", status_code=303)


@router.post("/batches/{batch_id}/retry")
async def retry(request: Request, batch_id: str, project: Project, svc: Svc) -> Response:
    same_origin(request)
    again = await svc.batches.retry(project, batch_id)
    return RedirectResponse(f"/ui/batches/{again.id}", status_code=303)


@router.get("/files/{file_id}")
async def download(file_id: str, project: Project, svc: Svc) -> Response:
    file = await svc.files.get(project, file_id)
    return FileResponse(
        svc.blobs.path(file.id), media_type="application/jsonl", filename=file.filename
    )
