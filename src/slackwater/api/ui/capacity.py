"""Capacity: pools and their prices over time, the queue against throughput, and
where the planner puts the project's open batches."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from slackwater.api.ui.batches import project_batches
from slackwater.api.ui.common import Project, Svc, ago, router, templates
from slackwater.runtime.services import Services

HISTORY = timedelta(hours=24)  # the prices and availability shown


@router.get("/capacity", response_class=HTMLResponse)
async def capacity_page(request: Request, project: Project, svc: Svc) -> Response:
    """Pools and their workers, queue depth against throughput per model, the planner's
    decision for each of the project's open batches, and deadlines at risk."""
    now = svc.clock()
    since = now - timedelta(seconds=svc.alive_seconds)
    pools = [
        {
            "name": pool.name,
            "kind": pool.kind.value,
            "price": f"${pool.price_per_hour}/hour" if pool.hourly else "the model's price",
            "feed": pool.feed,
            "workers": await svc.store.live_workers(pool.name, since),
        }
        for pool in svc.pools
    ]
    depth = await svc.store.queue_depth()
    speed = {
        r.key: r.compute_seconds / r.requests for r in await svc.store.ledger("model") if r.requests
    }
    models = []
    for name in sorted({m for m, _ in depth}):
        waiting = sum(n for (m, state), n in depth.items() if m == name)
        per = speed.get(name)
        models.append(
            {
                "model": name,
                "pending": depth.get((name, "pending"), 0),
                "leased": depth.get((name, "leased"), 0),
                "retrying": depth.get((name, "retrying"), 0),
                "per_second": f"{1 / per:.1f}" if per else "not measured",
                "drain": f"{waiting * per / 60:.1f} min" if per else "",
            }
        )
    reasons: dict[str, str] = {}
    for worker in svc.workers:
        if worker.placement is not None:
            reasons.update(worker.placement.reasons)
    mine = [b for b in await project_batches(svc, project) if not b.status.is_terminal]
    open_work = {w.batch_id: w for w in await svc.store.open_work()}
    batches_view = []
    for batch in mine:
        work = open_work.get(batch.id)
        per = speed.get(work.model, svc.default_seconds_per_request) if work else None
        left = (batch.expires_at - now).total_seconds()
        needs = work.requests * per if work and per else 0.0
        batches_view.append(
            {
                "id": batch.id,
                "deadline": ago(batch.expires_at, now),
                "needs": f"{needs / 60:.1f} min",
                "at_risk": needs > 0.8 * left,
                "decision": reasons.get(batch.id, "no planner here (local pool)"),
            }
        )
    context = {
        "project": project,
        "pools": pools,
        "models": models,
        "batches": batches_view,
        "history": await _pool_history(svc, now - HISTORY),
        "page": "capacity",
    }
    return templates.TemplateResponse(request, "capacity.html", context)


async def _pool_history(svc: Services, since: datetime) -> dict[str, Any]:
    """The pools' sampled prices and availability, for a chart: one time axis (the
    server samples every pool at once), a series per pool."""
    samples = await svc.store.pool_samples(since)
    times = sorted({s.at for s in samples})
    at = {moment: i for i, moment in enumerate(times)}
    prices: dict[str, list[float | None]] = {}
    available: dict[str, list[int | None]] = {}
    for s in samples:
        prices.setdefault(s.pool, [None] * len(times))[at[s.at]] = float(s.price_per_hour)
        available.setdefault(s.pool, [None] * len(times))[at[s.at]] = int(s.available)
    return {
        "times": [t.strftime("%m-%d %H:%M") for t in times],
        "prices": prices,
        "available": available,
    }
