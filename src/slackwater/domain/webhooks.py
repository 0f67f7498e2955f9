"""Webhook endpoints and events, in Standard Webhooks' format (as OpenAI sends them).

An event is thin: `{"id": "evt_…", "object": "event", "type": "batch.completed",
"created_at": …, "data": {"id": "batch_…"}}`; the receiver reads the object by its id.
Each delivery is signed with the endpoint's `whsec_` secret: headers `webhook-id` (the
event's id, the same on every retry), `webhook-timestamp` and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`), so Standard Webhooks' libraries and
the `openai` SDK's `client.webhooks.unwrap` verify them.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from slackwater.domain.batch import BatchStatus
from slackwater.domain.clock import to_unix

SECRET_PREFIX = "whsec_"

BATCH_EVENTS = {
    BatchStatus.COMPLETED: "batch.completed",
    BatchStatus.FAILED: "batch.failed",
    BatchStatus.EXPIRED: "batch.expired",
    BatchStatus.CANCELLED: "batch.cancelled",
}
RESPONSE_EVENTS = {
    status: f"response.{status}" for status in ("completed", "failed", "cancelled", "incomplete")
}
EVENT_TYPES = (*BATCH_EVENTS.values(), *RESPONSE_EVENTS.values())


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_hint(secret: str) -> str:
    return f"{SECRET_PREFIX}…{secret[-4:]}"


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    project: str
    name: str
    url: str
    event_types: tuple[str, ...]
    secret: str = field(repr=False)
    created_at: datetime
    updated_at: datetime
    # After a rotation that keeps the old secret for a while: deliveries are signed
    # with both until then.
    previous_secret: str | None = field(default=None, repr=False)
    previous_until: datetime | None = None

    def secrets(self, now: datetime) -> list[str]:
        kept = self.previous_secret and self.previous_until and now < self.previous_until
        return [self.secret, *([self.previous_secret] if kept else [])]  # type: ignore[list-item]

    def as_json(self, *, with_secret: bool = False) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "id": self.id,
            "object": "webhook_endpoint",
            "name": self.name,
            "url": self.url,
            "event_types": list(self.event_types),
            "created_at": to_unix(self.created_at),
            "updated_at": to_unix(self.updated_at),
            "signing_secret_hint": secret_hint(self.secret),
        }
        if with_secret:
            shown["signing_secret"] = self.secret
        return shown


def event_json(event_id: str, event_type: str, subject_id: str, created_at: datetime) -> bytes:
    """The thin event, as sent (the bytes that are signed)."""
    return orjson.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created_at": to_unix(created_at),
            "data": {"id": subject_id},
        }
    )
