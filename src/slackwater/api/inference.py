"""Realtime endpoints: the same engines as batches, answered in the call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response

from slackwater.api.deps import Project, services
from slackwater.api.errors import error_body
from slackwater.api.schemas import model_json
from slackwater.api.streaming import Chunks, Event, stream
from slackwater.domain.batch import Endpoint
from slackwater.domain.bodies import EXTENSION
from slackwater.domain.errors import BudgetExceeded, InvalidRequest, NotFound
from slackwater.domain.request import Outcome
from slackwater.domain.text import shown
from slackwater.domain.tiers import ServiceTier, tier_named
from slackwater.runtime.lookups import checked_keys, predict_with_cache
from slackwater.runtime.services import Services

router = APIRouter(prefix="/v1", tags=["realtime"])
log = logging.getLogger(__name__)
T = TypeVar("T")
DISCONNECT_POLL_SECONDS = 0.25  # how often a waiting call looks for its caller

JsonBody = Annotated[dict[str, Any], Body()]


async def _answer(
    request: Request, project: str, svc: Services, endpoint: Endpoint, body: dict[str, Any]
) -> Response:
    streamed = body.pop("stream", None)
    options = body.pop("stream_options", None)
    if streamed not in (None, True, False):
        raise InvalidRequest("stream must be true or false", param="stream")
    if streamed and endpoint in (Endpoint.EMBEDDINGS, Endpoint.PREDICTIONS):
        kind = "embeddings" if endpoint is Endpoint.EMBEDDINGS else "predictions"
        raise InvalidRequest(f"{kind} are not streamed; set stream to false", param="stream")
    if options is not None and (not streamed or not isinstance(options, dict)):
        raise InvalidRequest(
            "stream_options is an object, and only with stream: true", param="stream_options"
        )
    tier = tier_named(svc.tiers, body.pop("service_tier", None))
    ready = await svc.realtime.prepare(endpoint.value, body)
    model, body, route = ready.model, ready.body, ready.route
    if not tier.realtime:
        if streamed:
            raise InvalidRequest(
                f"the {tier.name} tier is answered whole: set stream to false", param="stream"
            )
        call = await svc.calls.put(
            tier, project=project, model=model.name, endpoint=endpoint, body=body, route=route
        )
        queued = await while_connected(
            request, svc.calls.answer(call.id), tier.window_seconds + svc.request_seconds
        )
        if queued is None:
            return closed_request()
        return _answered(queued, route, tier)
    if streamed:
        events: asyncio.Queue[Event] = asyncio.Queue()
        work = svc.engines.run(
            model.name,
            endpoint.value,
            [body],
            realtime=True,
            project=project,
            on_text=events.put_nowait,
            tier=tier.name,
        )
        wire = Chunks(
            endpoint.value,
            model.name,
            include_usage=bool((options or {}).get("include_usage")),
            route=route,
            service_tier=tier.name,
        )
        return await stream(work, wire, svc.request_seconds, events, _plain)
    work = svc.engines.run(
        model.name, endpoint.value, [body], realtime=True, project=project, tier=tier.name
    )
    finished = await while_connected(request, work, svc.request_seconds)
    if finished is None:  # the caller went away; its engine work was cancelled
        return closed_request()
    [outcome] = finished
    return _answered(outcome, route, tier)


def _answered(outcome: Outcome, route: dict[str, Any] | None, tier: ServiceTier) -> Response:
    if not outcome.ok:
        return _plain(outcome)
    answer = {**outcome.body, "service_tier": tier.name}
    if route is not None:
        answer[EXTENSION] = {"route": route}
    return JSONResponse(answer, status_code=outcome.status_code)


def closed_request() -> Response:
    return JSONResponse(
        error_body(
            "client closed the request", "invalid_request_error", None, "client_closed_request"
        ),
        status_code=499,
    )


def _plain(outcome: Outcome) -> Response:
    return JSONResponse(outcome.body, status_code=outcome.status_code)


async def while_connected(
    request: Request, work: Coroutine[Any, Any, T], budget: float
) -> T | None:
    """`work`'s result; None if the caller disconnects first. Either way, or past the
    compute budget (BudgetExceeded), the work is cancelled: nobody waits for it."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    try:
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise BudgetExceeded(
                    f"the request ran past its compute budget of {budget:g} s and was stopped"
                )
            done, _ = await asyncio.wait({task}, timeout=min(DISCONNECT_POLL_SECONDS, left))
            if done:
                return task.result()
            if await request.is_disconnected():
                log.info("realtime caller went away: its engine work is cancelled")
                return None
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@router.post("/chat/completions")
async def chat_completions(
    request: Request,
    body: JsonBody,
    project: Project,
    svc: Annotated[Services, Depends(services)],
) -> Response:
    return await _answer(request, project, svc, Endpoint.CHAT, body)


@router.post("/completions")
async def completions(
    request: Request,
    body: JsonBody,
    project: Project,
    svc: Annotated[Services, Depends(services)],
) -> Response:
    return await _answer(request, project, svc, Endpoint.COMPLETIONS, body)


@router.post("/embeddings")
async def embeddings(
    request: Request,
    body: JsonBody,
    project: Project,
    svc: Annotated[Services, Depends(services)],
) -> Response:
    return await _answer(request, project, svc, Endpoint.EMBEDDINGS, body)


@router.post("/predictions")
async def predictions(
    request: Request,
    body: JsonBody,
    project: Project,
    svc: Annotated[Services, Depends(services)],
) -> Response:
    """Predictions of a classical model: `{"model": ..., "inputs": [rows], "output":
    "predict" | "predict_proba" | "embedding"}`; a row is a list of feature values in
    the model's order, or an object by feature name. With `"keys"` (one per row), rows
    the model's last dataset job predicted (fresher than `"max_age"` seconds, if given)
    are answered from it and only the others go to the model."""
    if "keys" not in body:
        return await _answer(request, project, svc, Endpoint.PREDICTIONS, body)
    keys = checked_keys(body)
    model = svc.catalog.find(str(body.get("model")))
    if model is None:
        raise NotFound(f"The model '{shown(str(body.get('model')))}' does not exist", param="model")
    hits = await svc.store.precomputed_many(model.name, keys)

    async def online(rows: dict[str, Any]) -> Outcome:
        ready = await svc.realtime.prepare(Endpoint.PREDICTIONS.value, rows)
        [outcome] = await svc.engines.run(
            ready.model.name, Endpoint.PREDICTIONS.value, [ready.body], realtime=True,
            project=project,
        )  # fmt: skip
        return outcome

    outcome = await predict_with_cache(body, hits, online, svc.clock())
    if not outcome.ok:
        return _plain(outcome)
    usage = outcome.body["usage"]
    svc.metrics.looked_up(model.name, usage["precomputed_rows"], usage["rows"])
    return JSONResponse(outcome.body)


@router.get("/models")
async def list_models(_: Project, svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    return {"object": "list", "data": [model_json(m) for m in svc.catalog.models]}


@router.get("/models/{model_id}")
async def get_model(
    model_id: str, _: Project, svc: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    model = svc.catalog.find(model_id)
    if model is None:
        raise NotFound(f"The model '{shown(model_id)}' does not exist", param="model")
    return model_json(model)
