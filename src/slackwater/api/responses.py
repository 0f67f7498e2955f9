"""Responses API: POST /v1/responses, GET /v1/responses/{id}, POST .../{id}/cancel,
DELETE /v1/responses/{id} (OpenAI's wire format, for text)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from slackwater.api.deps import Project, services
from slackwater.api.inference import JsonBody, closed_request, while_connected
from slackwater.runtime.services import Services

router = APIRouter(prefix="/v1/responses", tags=["responses"])
Svc = Annotated[Services, Depends(services)]


@router.post("")
async def create_response(request: Request, body: JsonBody, project: Project, svc: Svc) -> Response:
    """A response: answered in the call, or with `background: true` queued at once (poll
    it by its id). `service_tier` says how long it may wait (docs/tiers.md)."""
    created = await svc.responses.create(project, body)
    if isinstance(created, dict):
        return JSONResponse(created)
    outcome = await while_connected(request, created.work, created.seconds)
    if outcome is None:
        return closed_request()
    return JSONResponse(outcome.body, status_code=outcome.status_code)


@router.get("/{response_id}")
async def get_response(response_id: str, project: Project, svc: Svc) -> dict[str, Any]:
    return await svc.responses.get(project, response_id)


@router.post("/{response_id}/cancel")
async def cancel_response(response_id: str, project: Project, svc: Svc) -> dict[str, Any]:
    return await svc.responses.cancel(project, response_id)


@router.delete("/{response_id}")
async def delete_response(response_id: str, project: Project, svc: Svc) -> dict[str, Any]:
    return await svc.responses.delete(project, response_id)
