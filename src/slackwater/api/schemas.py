"""Wire shapes: domain objects to OpenAI's JSON, and the request bodies of the API."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from slackwater.domain.batch import Batch
from slackwater.domain.clock import to_unix
from slackwater.domain.errors import InvalidRequest
from slackwater.domain.files import FileObject
from slackwater.domain.model import Model
from slackwater.ports import Page


class CreateBatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, Any] | None = None
    output_expires_after: dict[str, Any] | None = None


def file_json(file: FileObject) -> dict[str, Any]:
    return {
        "id": file.id,
        "object": "file",
        "bytes": file.bytes,
        "created_at": to_unix(file.created_at),
        "expires_at": to_unix(file.expires_at),
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
        "status_details": None,
    }


def batch_json(batch: Batch) -> dict[str, Any]:
    errors = (
        {
            "object": "list",
            "data": [
                {"code": e.code, "message": e.message, "param": e.param, "line": e.line}
                for e in batch.errors
            ],
        }
        if batch.errors
        else None
    )
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "errors": errors,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status.value,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": to_unix(batch.created_at),
        "in_progress_at": to_unix(batch.in_progress_at),
        "expires_at": to_unix(batch.expires_at),
        "finalizing_at": to_unix(batch.finalizing_at),
        "completed_at": to_unix(batch.completed_at),
        "failed_at": to_unix(batch.failed_at),
        "expired_at": to_unix(batch.expired_at),
        "cancelling_at": to_unix(batch.cancelling_at),
        "cancelled_at": to_unix(batch.cancelled_at),
        "request_counts": {
            "total": batch.request_counts.total,
            "completed": batch.request_counts.completed,
            "failed": batch.request_counts.failed,
        },
        "metadata": batch.metadata,
        "model": batch.model,
        "usage": {
            "input_tokens": batch.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": batch.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": batch.prompt_tokens + batch.completion_tokens,
        },
        "retried_from": batch.retried_from,
        # Extension: what the batch has cost so far, against the same tokens in real time.
        "slackwater": {"cost": cost_json(batch.cost, batch.realtime_cost)},
    }


def usd(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


def cost_json(cost: Decimal, realtime: Decimal) -> dict[str, Any]:
    return {
        "cost_usd": usd(cost),
        "realtime_cost_usd": usd(realtime),
        "saving_usd": usd(realtime - cost),
    }


def model_json(model: Model) -> dict[str, Any]:
    return {
        "id": model.name,
        "object": "model",
        "created": 0,
        "owned_by": model.owned_by,
        "engine": model.engine,
        "endpoints": sorted(e.value for e in model.endpoints),
    }


def list_json(page: Page, render: Any) -> dict[str, Any]:
    data = [render(item) for item in page.items]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.has_more,
    }


def text_field(body: dict[str, Any], field: str) -> str:
    """A required non-empty string field of a JSON body, or InvalidRequest naming it."""
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"'{field}' must be a non-empty string", param=field)
    return value


def optional_text(body: dict[str, Any], field: str) -> str | None:
    """An optional string field: absent (None), or as `text_field` checks it."""
    return None if body.get(field) is None else text_field(body, field)
