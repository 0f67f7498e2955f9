"""Cost and savings: the ledger against the same work at realtime prices."""

from __future__ import annotations

from decimal import Decimal

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from slackwater.api.schemas import cost_json
from slackwater.api.ui.common import Project, Svc, router, templates


@router.get("/cost", response_class=HTMLResponse)
async def cost_page(request: Request, project: Project, svc: Svc) -> Response:
    """Spend by model, pool, tier and day, against the same work at realtime prices; each
    day's spend by model."""
    groups = {}
    for by in ("model", "pool", "tier", "day"):
        rows = await svc.store.ledger(by, project)
        groups[by] = [
            {"key": r.key, "requests": r.requests, **cost_json(r.cost, r.realtime_cost)}
            for r in rows
        ]
    total_cost = sum((Decimal(r["cost_usd"]) for r in groups["model"]), Decimal(0))
    total_realtime = sum((Decimal(r["realtime_cost_usd"]) for r in groups["model"]), Decimal(0))
    days = [r["key"] for r in groups["day"]]
    spend: dict[str, list[float]] = {}
    for row in await svc.store.ledger("model", project, daily=True):
        spend.setdefault(row.key, [0.0] * len(days))[days.index(str(row.day))] = float(row.cost)
    context = {
        "project": project,
        "groups": groups,
        "total": cost_json(total_cost, total_realtime),
        "ratio": f"{total_realtime / total_cost:.1f}x" if total_cost else "-",
        "chart": {
            "days": days,
            "cost": [float(r["cost_usd"]) for r in groups["day"]],
            "realtime": [float(r["realtime_cost_usd"]) for r in groups["day"]],
            "by_model": spend,
        },
        "page": "cost",
    }
    return templates.TemplateResponse(request, "cost.html", context)
