"""The dashboard at /ui: server-rendered pages (Jinja2) kept live by htmx fragments
(ADR 14). A browser signs in with an API key once; the key rides in a cookie read only
on /ui paths, and every page shows the key's project only."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from importlib.resources import files as package_files
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from slackwater.api.auth import UI_COOKIE as COOKIE
from slackwater.api.deps import services
from slackwater.api.schemas import cost_json
from slackwater.domain.batch import Batch, BatchStatus
from slackwater.domain.errors import AuthenticationError, PermissionDenied
from slackwater.domain.route import RouteRecord
from slackwater.ports import RequestView
from slackwater.runtime.keys import hash_key
from slackwater.runtime.services import Services

router = APIRouter(prefix="/ui", include_in_schema=False)
STATIC = package_files("slackwater.api") / "static"
templates = Jinja2Templates(directory=str(package_files("slackwater.api") / "templates"))
Svc = Annotated[Services, Depends(services)]
PAGE = 50
ROUTES = 2000  # routed requests the router page looks back over
HISTORY = timedelta(hours=24)  # the capacity page's prices and availability
SWAGGER_JS, SWAGGER_CSS = "swagger-ui-bundle-5.35.0.js", "swagger-ui-5.35.0.css"


class SignIn(Exception):
    """The browser has no (valid) key: send it to the sign-in page."""


async def ui_project(request: Request) -> str:
    try:
        project: str = await request.app.state.key_check(request)
    except AuthenticationError as exc:  # a key's scope refusing a button is a 403
        raise SignIn() from exc
    return project


Project = Annotated[str, Depends(ui_project)]


def _same_origin(request: Request) -> None:
    """A form posted from another site (cross-site request forgery) is refused."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
        raise PermissionDenied("the dashboard takes its forms from its own pages only")


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return ""
    seconds = (when - now).total_seconds()
    span = abs(seconds)
    text = (
        f"{span:.0f} s" if span < 120 else f"{span / 60:.0f} min" if span < 7200 else
        f"{span / 3600:.1f} h"
    )  # fmt: skip
    return f"in {text}" if seconds > 0 else f"{text} ago"


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
        "deadline": _ago(batch.expires_at, now) if not batch.status.is_terminal else "",
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


async def _batches(svc: Services, project: str, filters: Filters = Filters()) -> list[Batch]:
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


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, error: str = "") -> Response:
    return templates.TemplateResponse(request, "login.html", {"error": error})


@router.post("/login")
async def login(request: Request, svc: Svc, key: Annotated[str, Form()]) -> Response:
    _same_origin(request)
    found = await svc.store.key_for(hash_key(key.strip()), svc.clock())
    if found is None:
        return templates.TemplateResponse(
            request, "login.html", {"error": "That key is not valid."}, status_code=401
        )
    answer = RedirectResponse("/ui/batches", status_code=303)
    answer.set_cookie(
        COOKIE, key.strip(), httponly=True, samesite="strict", path="/ui", max_age=7 * 86400
    )
    return answer


@router.get("/logout")
async def logout() -> Response:
    answer = RedirectResponse("/ui/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/ui")
    return answer


@router.get("")
async def home() -> Response:
    return RedirectResponse("/ui/batches", status_code=303)


@router.get("/batches", response_class=HTMLResponse)
async def batches_page(
    request: Request,
    project: Project,
    svc: Svc,
    filters: Annotated[Filters, Depends()],
) -> Response:
    rows = [batch_row(b, svc.clock()) for b in await _batches(svc, project, filters)]
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
    rows = [batch_row(b, svc.clock()) for b in await _batches(svc, project, filters)]
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
    _same_origin(request)
    await svc.batches.cancel(project, batch_id)
    return RedirectResponse(f"/ui/batches/{batch_id}", status_code=303)


@router.post("/batches/{batch_id}/retry")
async def retry(request: Request, batch_id: str, project: Project, svc: Svc) -> Response:
    _same_origin(request)
    again = await svc.batches.retry(project, batch_id)
    return RedirectResponse(f"/ui/batches/{again.id}", status_code=303)


@router.get("/files/{file_id}")
async def download(file_id: str, project: Project, svc: Svc) -> Response:
    file = await svc.files.get(project, file_id)
    return FileResponse(
        svc.blobs.path(file.id), media_type="application/jsonl", filename=file.filename
    )


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
                    else f"a timer ({_ago(waiting.until, now)})" if waiting and waiting.until
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
                "next": _ago(s.next_run_at, now),
                "dataset": s.source,
            }
            for s in schedules
        ],
        "page": "predictions",
    }
    return templates.TemplateResponse(request, "predictions.html", context)


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
            "workers": await svc.store.live_workers(pool.kind.value, since),
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
    mine = [b for b in await _batches(svc, project) if not b.status.is_terminal]
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
                "deadline": _ago(batch.expires_at, now),
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
