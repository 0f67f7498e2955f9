"""Webhook endpoints API (OpenAI's wire format): /v1/webhook_endpoints and
/v1/webhook_event_types. An endpoint's secret is shown when it is created or rotated,
never again."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query

from slackwater.api.deps import Project, services
from slackwater.api.schemas import list_json
from slackwater.domain.webhooks import EVENT_TYPES, WebhookEndpoint
from slackwater.runtime.services import Services

router = APIRouter(prefix="/v1", tags=["webhooks"])
Svc = Annotated[Services, Depends(services)]
JsonBody = Annotated[dict[str, Any], Body()]
OptionalBody = Annotated[dict[str, Any] | None, Body()]


def _json(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return endpoint.as_json()


@router.post("/webhook_endpoints")
async def create_endpoint(body: JsonBody, project: Project, svc: Svc) -> dict[str, Any]:
    endpoint = await svc.endpoints.create(
        project, name=body.get("name"), url=body.get("url"), event_types=body.get("event_types")
    )
    return endpoint.as_json(with_secret=True)


@router.get("/webhook_endpoints")
async def list_endpoints(
    project: Project,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> dict[str, Any]:
    return list_json(await svc.endpoints.list(project, limit=limit, after=after), _json)


@router.get("/webhook_endpoints/{webhook_endpoint_id}")
async def get_endpoint(webhook_endpoint_id: str, project: Project, svc: Svc) -> dict[str, Any]:
    return _json(await svc.endpoints.get(project, webhook_endpoint_id))


@router.post("/webhook_endpoints/{webhook_endpoint_id}")
async def update_endpoint(
    webhook_endpoint_id: str, body: JsonBody, project: Project, svc: Svc
) -> dict[str, Any]:
    endpoint = await svc.endpoints.update(
        project,
        webhook_endpoint_id,
        name=body.get("name"),
        url=body.get("url"),
        event_types=body.get("event_types"),
    )
    return _json(endpoint)


@router.delete("/webhook_endpoints/{webhook_endpoint_id}")
async def delete_endpoint(webhook_endpoint_id: str, project: Project, svc: Svc) -> dict[str, Any]:
    await svc.endpoints.delete(project, webhook_endpoint_id)
    return {"id": webhook_endpoint_id, "object": "webhook_endpoint.deleted", "deleted": True}


@router.post("/webhook_endpoints/{webhook_endpoint_id}/rotate_secret")
async def rotate_secret(
    webhook_endpoint_id: str, project: Project, svc: Svc, body: OptionalBody = None
) -> dict[str, Any]:
    keep = bool((body or {}).get("keep_old_secret_active_for_24_hours", False))
    endpoint = await svc.endpoints.rotate(project, webhook_endpoint_id, keep_old_secret=keep)
    return endpoint.as_json(with_secret=True)


@router.post("/webhook_endpoints/{webhook_endpoint_id}/test")
async def test_endpoint(
    webhook_endpoint_id: str, body: JsonBody, project: Project, svc: Svc
) -> dict[str, Any]:
    event_type = body.get("event_type")
    status = await svc.endpoints.test(project, webhook_endpoint_id, event_type)
    return {
        "object": "webhook_endpoint.test",
        "webhook_endpoint_id": webhook_endpoint_id,
        "event_type": event_type,
        "status_code": status,
        "success": True,
    }


@router.get("/webhook_event_types")
async def event_types(_: Project) -> dict[str, Any]:
    return {"object": "list", "data": list(EVENT_TYPES)}
