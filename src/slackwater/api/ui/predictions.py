"""Classical models: dataset jobs and their schedules."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from slackwater.api.ui.common import PAGE, Project, Svc, ago, router, templates


@router.get("/predictions", response_class=HTMLResponse)
async def predictions_page(request: Request, project: Project, svc: Svc) -> Response:
    """Dataset jobs and schedules: status, progress, duration, cost; missed runs."""
    jobs = (await svc.store.list_jobs(project, limit=PAGE, after=None)).items
    schedules = (await svc.store.list_schedules(project, limit=PAGE, after=None)).items
    now = svc.clock()
    context = {
        "project": project,
        "jobs": [
            {
                "id": j.id,
                "model": j.model,
                "status": j.status.value,
                "rows": j.rows_done,
                "total": j.total_rows or j.estimated_rows,
                "percent": round(100 * j.rows_done / (j.total_rows or j.estimated_rows or 1)),
                "compute": f"{j.compute_seconds:.2f}",
                "cost": str(svc.datasets.cost(j)),
                "schedule": j.schedule_id or "",
                "error": (j.error or {}).get("message", ""),
            }
            for j in jobs
        ],
        "schedules": [
            {
                "id": s.id,
                "model": s.model,
                "period": s.period,
                "next": ago(s.next_run_at, now),
                "dataset": s.source,
            }
            for s in schedules
        ],
        "lookups": [
            {
                "model": model,
                "precomputed": rows.get("precomputed", 0),
                "online": rows.get("model", 0),
                "missing": rows.get("missing", 0),
                "hit_rate": f"{rows.get('precomputed', 0) / sum(rows.values()):.1%}",
            }
            for model, rows in sorted(svc.metrics.lookups().items())
        ],
        "page": "predictions",
    }
    return templates.TemplateResponse(request, "predictions.html", context)
