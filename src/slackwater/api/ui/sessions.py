"""Agent sessions: running against waiting, active against wall-clock time."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from slackwater.api.ui.common import PAGE, Project, Svc, ago, router, templates


@router.get("/sessions", response_class=HTMLResponse)
async def sessions_page(request: Request, project: Project, svc: Svc) -> Response:
    """Agent sessions: running against waiting (holding no compute), active seconds
    against wall-clock seconds."""
    page = await svc.store.list_sessions(project, limit=PAGE, after=None)
    now = svc.clock()
    rows = []
    for session in page.items:
        end = session.finished_at or now
        waiting = session.waiting
        rows.append(
            {
                "id": session.id,
                "agent": session.agent,
                "status": session.status.value,
                "steps": session.steps,
                "waits_for": (
                    f"event {waiting.event!r}" if waiting and waiting.event
                    else f"a timer ({ago(waiting.until, now)})" if waiting and waiting.until
                    else "its inferences" if session.status.value == "waiting" else ""
                ),
                "active": f"{session.active_seconds:.2f}",
                "wall": f"{(end - session.created_at).total_seconds():.0f}",
            }
        )  # fmt: skip
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    context = {"project": project, "rows": rows, "counts": counts, "page": "sessions"}
    return templates.TemplateResponse(request, "sessions.html", context)
