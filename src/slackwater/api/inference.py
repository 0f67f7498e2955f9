"""Realtime endpoints: the same engines as batches, answered in the call."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse

from slackwater.api.deps import Project, services
from slackwater.api.schemas import model_json
from slackwater.domain.batch import Endpoint
from slackwater.domain.bodies import parse_body
from slackwater.domain.errors import InvalidRequest, NotFound
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
    model = svc.engines.model(parsed.model)
    if not model.serves(endpoint.value):
        raise InvalidRequest(
            f"model {parsed.model!r} does not serve {endpoint.value}",
            param="model",
            code="model_not_supported",
        )
    [outcome] = await svc.engines.run(model.name, endpoint.value, [body], realtime=True)
    return JSONResponse(outcome.body, status_code=outcome.status_code)


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
