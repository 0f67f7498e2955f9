"""Webhook endpoints, as the API and the CLI manage them: each project's receivers, the
events each wants, and the secrets that sign them (OpenAI's webhook endpoints API)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from slackwater.domain.errors import InvalidRequest
from slackwater.domain.ids import new_id
from slackwater.domain.webhooks import EVENT_TYPES, WebhookEndpoint, event_json, new_secret
from slackwater.ports import Clock, EndpointStore, Page
from slackwater.runtime.webhooks import standard_headers

MAX_NAME = 256
KEEP_OLD_SECRET = timedelta(hours=24)


class WebhookEndpoints:
    def __init__(
        self,
        store: EndpointStore,
        clock: Clock,
        *,
        allow_http: bool = False,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.allow_http = allow_http
        self.timeout = timeout
        self.transport = transport

    def _url(self, url: Any) -> str:
        schemes = ("https", "http") if self.allow_http else ("https",)
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in schemes or not parts.hostname:
            allowed = " or ".join(f"{s}://" for s in schemes)
            raise InvalidRequest(
                f"url must be an absolute {allowed} URL"
                + ("" if self.allow_http else " (set webhook_allow_http to allow http://)"),
                param="url",
            )
        return str(url)

    def _name(self, name: Any) -> str:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise InvalidRequest(
                f"name must be a string of 1 to {MAX_NAME} characters", param="name"
            )
        return name

    def _events(self, event_types: Any) -> list[str]:
        if not isinstance(event_types, list) or not event_types:
            raise InvalidRequest("event_types must be a non-empty list", param="event_types")
        for index, event_type in enumerate(event_types):
            if event_type not in EVENT_TYPES:
                raise InvalidRequest(
                    f"event_types[{index}]: {event_type!r} is not one of this server's events "
                    f"({', '.join(EVENT_TYPES)})",
                    param=f"event_types[{index}]",
                )
        return list(dict.fromkeys(event_types))

    async def create(
        self, project: str, *, name: Any, url: Any, event_types: Any
    ) -> WebhookEndpoint:
        now = self.clock()
        endpoint = WebhookEndpoint(
            id=new_id("whep"),
            project=project,
            name=self._name(name),
            url=self._url(url),
            event_types=tuple(self._events(event_types)),
            secret=new_secret(),
            created_at=now,
            updated_at=now,
        )
        await self.store.add_endpoint(endpoint)
        return endpoint

    async def get(self, project: str, endpoint_id: str) -> WebhookEndpoint:
        return await self.store.get_endpoint(project, endpoint_id)

    async def list(self, project: str, *, limit: int = 20, after: str | None = None) -> Page:
        return await self.store.list_endpoints(project, limit=limit, after=after)

    async def update(
        self,
        project: str,
        endpoint_id: str,
        *,
        name: Any = None,
        url: Any = None,
        event_types: Any = None,
    ) -> WebhookEndpoint:
        return await self.store.change_endpoint(
            project,
            endpoint_id,
            self.clock(),
            name=self._name(name) if name is not None else None,
            url=self._url(url) if url is not None else None,
            event_types=self._events(event_types) if event_types is not None else None,
        )

    async def delete(self, project: str, endpoint_id: str) -> None:
        await self.store.delete_endpoint(project, endpoint_id)

    async def rotate(
        self, project: str, endpoint_id: str, *, keep_old_secret: bool = False
    ) -> WebhookEndpoint:
        now = self.clock()
        return await self.store.change_endpoint(
            project,
            endpoint_id,
            now,
            secret=new_secret(),
            previous_until=now + KEEP_OLD_SECRET if keep_old_secret else None,
        )

    async def test(self, project: str, endpoint_id: str, event_type: Any) -> int:
        """Send a sample event of the type to the endpoint now; the HTTP status it gave."""
        self._events([event_type])
        endpoint = await self.store.get_endpoint(project, endpoint_id)
        now = self.clock()
        event_id = new_id("evt")
        subject = "batch_test" if str(event_type).startswith("batch.") else "resp_test"
        body = event_json(event_id, str(event_type), subject, now)
        headers = standard_headers(event_id, body, endpoint.secrets(now), now)
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
            try:
                answer = await client.post(
                    endpoint.url,
                    content=body,
                    headers={"Content-Type": "application/json", **headers},
                )
            except httpx.HTTPError as exc:
                raise InvalidRequest(
                    f"the endpoint could not be reached: {exc!r}", param="webhook_endpoint_id"
                ) from None
        return answer.status_code
