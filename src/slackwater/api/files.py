"""Files API: POST/GET /v1/files, GET/DELETE /v1/files/{id}, GET /v1/files/{id}/content."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from slackwater.api.deps import Project, services
from slackwater.api.multipart import paced, read_form
from slackwater.api.schemas import file_json, list_json
from slackwater.domain.errors import InvalidRequest
from slackwater.runtime.files import expiry_seconds
from slackwater.runtime.services import Services

router = APIRouter(prefix="/v1/files", tags=["files"])

UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "purpose": {"type": "string", "enum": ["batch"]},
                        "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
                        "expires_after[seconds]": {"type": "integer"},
                    },
                }
            }
        },
    }
}


@router.post("", openapi_extra=UPLOAD_SCHEMA)
async def upload_file(
    request: Request, project: Project, svc: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    with ExitStack() as stack:
        upload = svc.files.receive(stack, project)
        pace = svc.files.pace
        body = paced(
            request.stream(),
            idle_seconds=pace.idle_seconds,
            min_bytes_per_second=pace.min_bytes_per_second,
            grace=pace.grace_seconds,
        )
        form = await read_form(request.headers.get("content-type", ""), body, "file", upload.write)
        if form.filename is None:
            raise InvalidRequest("the 'file' part is required", param="file")
        purpose = form.fields.get("purpose")
        if not purpose:
            raise InvalidRequest("the 'purpose' field is required", param="purpose")
        anchor = form.fields.get("expires_after[anchor]")
        seconds = form.fields.get("expires_after[seconds]")
        expires_after = (
            expiry_seconds(anchor, seconds, "expires_after")
            if anchor is not None or seconds is not None
            else None
        )
        await asyncio.to_thread(upload.handle.flush)
    try:
        file = await svc.files.commit(upload, project, form.filename, purpose, expires_after)
    except Exception:
        await svc.blobs.delete(upload.id)
        raise
    return file_json(file)


@router.get("")
async def list_files(
    project: Project,
    svc: Annotated[Services, Depends(services)],
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    page = await svc.files.list(project, purpose=purpose, limit=limit, after=after, order=order)
    return list_json(page, file_json)


@router.get("/{file_id}")
async def get_file(
    file_id: str, project: Project, svc: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    return file_json(await svc.files.get(project, file_id))


@router.get("/{file_id}/content")
async def file_content(
    file_id: str, project: Project, svc: Annotated[Services, Depends(services)]
) -> FileResponse:
    path = await svc.files.content_path(project, file_id)
    return FileResponse(path, media_type="application/jsonl")


@router.delete("/{file_id}")
async def delete_file(
    file_id: str, project: Project, svc: Annotated[Services, Depends(services)]
) -> dict[str, Any]:
    file = await svc.files.delete(project, file_id)
    return {"id": file.id, "object": "file", "deleted": True}
