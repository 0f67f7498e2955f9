"""Realtime endpoints: the same engines as batches, answered in the call."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse

from slackwater.api.deps import Project, services
from slackwater.api.schemas import model_json
from slackwater.domain.batch import Endpoint, LineError
from slackwater.domain.bodies import EXTENSION, parse_body
from slackwater.domain.errors import InvalidRequest, NotFound, SlackwaterError
from slackwater.domain.model import Tier
from slackwater.runtime.services import Services

router = APIRouter(prefix="/v1", tags=["realtime"])

JsonBody = Annotated[dict[str, Any], Body()]


def _refuse(error: LineError) -> SlackwaterError:
    """A body's problem as the realtime API reports it (params are top-level names)."""
    param = error.param.removeprefix("body.") if error.param else None
    kind = NotFound if error.code == "model_not_found" else InvalidRequest
    return kind(error.message, param=param, code=error.code)


async def _answer(svc: Services, endpoint: Endpoint, body: dict[str, Any]) -> JSONResponse:
    if body.get("stream"):
        raise InvalidRequest("streaming is not supported; set stream to false", param="stream")
    parsed = parse_body(endpoint.value, body)
    if isinstance(parsed, list):
        raise _refuse(parsed[0])
    route: dict[str, Any] | None = None
    router = svc.router
    if router is not None and router.named(parsed["model"]) is not None:
        # Off the event loop: the learned router embeds the prompt.
        routed = await asyncio.to_thread(
            router.resolve_one, endpoint.value, body, tier=Tier.REALTIME
        )
        body, route = routed.body, routed.route.to_dict()
    body.pop(EXTENSION, None)
    model = svc.catalog.serving(body["model"], endpoint.value)
    if isinstance(model, LineError):
        raise _refuse(model)
    [outcome] = await svc.engines.run(model.name, endpoint.value, [body], realtime=True)
    answer = outcome.body if route is None else {**outcome.body, EXTENSION: {"route": route}}
    return JSONResponse(answer, status_code=outcome.status_code)


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
