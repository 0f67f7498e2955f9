"""The router: the model mix, escalations and their reasons, and quality evaluated,
predicted and observed."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from slackwater.api.ui.common import Project, Svc, router, templates
from slackwater.domain.route import RouteRecord

ROUTES = 2000  # routed requests the page looks back over


@router.get("/router", response_class=HTMLResponse)
async def router_page(request: Request, project: Project, svc: Svc) -> Response:
    """The model mix, escalations and their reasons (the latest routed requests), and
    each model's evaluated quality against the checks its answers passed."""
    mix = await svc.store.ledger("model", project)
    total = sum(r.requests for r in mix) or 1
    routes = [RouteRecord.from_json(r) for r in await svc.store.recent_routes(project, ROUTES)]
    reasons: dict[str, int] = {}
    escalated = 0
    for route in routes:
        escalated += bool(route.attempts)
        for attempt in route.attempts:
            key = f"{attempt.model}: {attempt.failed_check.split(':')[0]}"
            reasons[key] = reasons.get(key, 0) + 1
    observed = await svc.store.outcomes()
    quality = []
    for (model, task), (passed, failed) in sorted(observed.items()):
        found = svc.catalog.find(model)
        evaluated = found.quality_for(task or None) if found else None
        quality.append(
            {
                "model": model,
                "task": task or "default",
                "evaluated": f"{evaluated:.2f}" if evaluated is not None else "",
                "observed": f"{passed / (passed + failed):.2f}" if passed + failed else "",
                "checked": passed + failed,
            }
        )
    context = {
        "project": project,
        "mix": [
            {
                "model": r.key,
                "requests": r.requests,
                "share": f"{100 * r.requests / total:.1f}%",
                "cost": f"{r.cost:.6f}",
            }
            for r in mix
        ],
        "routed": len(routes),
        "escalated": escalated,
        "reasons": sorted(reasons.items(), key=lambda kv: -kv[1]),
        "quality": quality,
        "predicted": _predicted(routes),
        "page": "router",
    }
    return templates.TemplateResponse(request, "router.html", context)


def _predicted(routes: list[RouteRecord]) -> list[dict[str, Any]]:
    """The learned router judged on the latest routed requests it predicted for: per
    model first tried, the requests, its mean predicted quality on them, and the share
    whose answer kept (failed no check, so did not climb to a stronger model)."""
    tally: dict[str, list[float]] = {}  # model -> [requests, predicted sum, kept]
    for route in routes:
        first = route.attempts[0].model if route.attempts else route.model
        if first not in route.predicted_quality:
            continue
        counts = tally.setdefault(first, [0, 0.0, 0])
        counts[0] += 1
        counts[1] += route.predicted_quality[first]
        counts[2] += not route.attempts
    return [
        {
            "model": model,
            "requests": int(n),
            "predicted": f"{total / n:.2f}",
            "kept": f"{kept / n:.2f}",
        }
        for model, (n, total, kept) in sorted(tally.items())
    ]
