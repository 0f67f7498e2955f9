"""Realtime endpoints: the same engines as batches, answered in the call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse

from slackwater.api.deps import Project, services
from slackwater.api.schemas import model_json
from slackwater.domain.batch import Endpoint, LineError
from slackwater.domain.bodies import EXTENSION, parse_body
from slackwater.domain.errors import InvalidRequest, NotFound
from slackwater.domain.model import Tier
from slackwater.runtime.routing import AutoRouter
from slackwater.runtime.services import Services

router = APIRouter(prefix="/v1", tags=["realtime"])

JsonBody = Annotated[dict[str, Any], Body()]


async def _answer(svc: Services, endpoint: Endpoint, body: dict[str, Any]) -> JSONResponse:
    if body.get("stream"):
        raise InvalidRequest("streaming is not supported; set stream to false", param="stream")
    parsed = parse_body(endpoint.value, body)
    if isinstance(parsed, list):
        first = parsed[0]
        raise InvalidRequest(first.message, param=first.param, code=first.code)
    route: dict[str, Any] | None = None
    router = svc.intake.router
    if router is not None and (named := router.named(parsed["model"])) is not None:
        # Off the event loop: the learned router embeds the prompt.
        body, route = await asyncio.to_thread(
            _route, router, endpoint, body, parsed["model"], named
        )
    body.pop(EXTENSION, None)
    model = svc.engines.model(body["model"])
    if not model.serves(endpoint.value):
        raise InvalidRequest(
            f"model {parsed['model']!r} does not serve {endpoint.value}",
            param="model",
            code="model_not_supported",
        )
    [outcome] = await svc.engines.run(model.name, endpoint.value, [body], realtime=True)
    answer = outcome.body if route is None else {**outcome.body, EXTENSION: {"route": route}}
    return JSONResponse(answer, status_code=outcome.status_code)


def _route(
    router: AutoRouter,
    endpoint: Endpoint,
    body: dict[str, Any],
    requested: str,
    named: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pick the model for `"model": "auto"` (or a named route) at realtime prices."""
    constraints = router.constraints(body.get(EXTENSION), named, 0, Tier.REALTIME)
    if isinstance(constraints, list):
        first = constraints[0]
        raise InvalidRequest(first.message, param=first.param, code=first.code)
    choice = router.choose(endpoint.value, body, constraints, 0, requested=requested)
    if isinstance(choice, LineError):
        raise InvalidRequest(choice.message, param=choice.param, code=choice.code)
    model, record = choice
    return {**body, "model": model}, json.loads(record)


@router.post("/chat/completions")
async def chat_completions(
    body: JsonBody, _: Project, svc: Annotated[Services, Depends(services)]
) -> JSONResponse:
    return await _answer(svc, Endpoint.CHAT, body)


@router.post("/completions")
async def completions(
    body: JsonBody, _: Project, svc: Annotated[Services, Depends(services)]
) -> JSONResponse:
    return await _answer(svc, Endpoint.COMPLETIONS, body)


@router.post("/embeddings")
async def embeddings(
    body: JsonBody, _: Project, svc: Annotated[Services, Depends(services)]
) -> JSONResponse:
    return await _answer(svc, Endpoint.EMBEDDINGS, body)


@router.get("/models")
async def list_models(_: Project, svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    return {"object": "list", "data": [model_json(m) for m in svc.catalog.models]}


@router.get("/models/{model_id}")
async def get_model(
    model_id: str, _: Project, svc: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    model = svc.catalog.find(model_id)
    if model is None:
        raise NotFound(f"The model '{model_id}' does not exist", param="model")
    return model_json(model)
