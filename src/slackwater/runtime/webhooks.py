"""Webhooks: deliver events from the outbox, signed, retried, never lost.

The store writes an outbox row per receiver in the same transaction that ends a batch or
a response, so a crash cannot lose an event; this sender delivers due rows and retries
failures with exponential backoff. Delivery is at least once: receivers deduplicate by
the `webhook-id` header (the event's id, the same on every attempt).

Events are sent in Standard Webhooks' format (`domain/webhooks.py`), which the `openai`
SDK's `client.webhooks.unwrap` verifies. The configured `webhook_url` can be given
slackwater's earlier format instead (`webhook_format = "slackwater"`): the batch object
in the body and `Slackwater-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections import defaultdict
from datetime import datetime
from typing import Literal

import httpx
from standardwebhooks.webhooks import Webhook

from slackwater.domain.clock import to_unix
from slackwater.domain.errors import NotFound
from slackwater.domain.webhooks import SECRET_PREFIX, event_json
from slackwater.policy.retry import RetryPolicy, backoff
from slackwater.ports import Clock, Delivery, OutboxStore

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "Slackwater-Signature"
WebhookFormat = Literal["standard", "slackwater"]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """slackwater's earlier signature (`webhook_format = "slackwater"`)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = 300) -> bool:
    """Check an earlier-format signature as a receiver would."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def standard_headers(
    event_id: str, body: bytes, secrets: list[str], now: datetime
) -> dict[str, str]:
    """Standard Webhooks' headers; one signature per secret (a rotated secret that is
    kept signs too, so receivers can change secrets without missing an event)."""
    headers = {"webhook-id": event_id, "webhook-timestamp": str(int(now.timestamp()))}
    if secrets:
        text = body.decode()
        headers["webhook-signature"] = " ".join(
            # A `whsec_` secret is base64 (as Standard Webhooks' and OpenAI's libraries
            # read it); any other string signs as its own bytes, as the openai SDK reads it.
            Webhook(secret if secret.startswith(SECRET_PREFIX) else secret.encode()).sign(
                event_id, now, text
            )
            for secret in secrets
        )
    return headers


class WebhookSender:
    def __init__(
        self,
        store: OutboxStore,
        clock: Clock,
        url: str | None,
        secret: str | None,
        *,
        format: WebhookFormat = "standard",
        policy: RetryPolicy | None = None,
        interval: float = 0.5,
        timeout: float = 5.0,
        concurrency: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.url = url
        self.secret = secret
        self.format = format
        self.policy = policy or RetryPolicy(max_attempts=10, base_seconds=2, max_seconds=600)
        self.interval = interval
        self.concurrency = concurrency
        self.stopping = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)
        # A receiver that keeps failing is left alone for a while (its events wait in
        # the outbox), rather than tried for every event: url -> (failures in a row, until).
        self._failing: dict[str, tuple[int, float]] = {}

    async def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    await self.send_due()
                except Exception:
                    log.exception("webhook delivery round failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.interval)
        finally:
            await self._client.aclose()

    def stop(self) -> None:
        self.stopping.set()

    def _url(self, delivery: Delivery) -> str | None:
        if delivery.endpoint_id is None:
            return self.url
        return delivery.endpoint.url if delivery.endpoint is not None else None

    async def send_due(self) -> int:
        """Send what is due, side by side: one slow receiver costs one timeout, not one
        per event."""
        due = await self.store.due_deliveries(self.clock(), 50)
        limit = asyncio.Semaphore(self.concurrency)
        now = time.monotonic()
        by_url: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in due:
            url = self._url(delivery)
            if url is None:  # its endpoint was deleted, or the setting removed
                await self.store.delivery_failed(delivery.id, "no receiver any more", None)
            elif self._failing.get(url, (0, float("-inf")))[1] <= now:
                by_url[url].append(delivery)

        async def send(url: str, delivery: Delivery) -> int:
            async with limit:
                return await self._send(url, delivery)

        urls = list(by_url)
        results = await asyncio.gather(
            *(asyncio.gather(*(send(url, d) for d in by_url[url])) for url in urls)
        )
        sent = 0
        for url, outcomes in zip(urls, results, strict=True):
            sent += sum(outcomes)
            if any(outcomes):
                self._failing.pop(url, None)
                continue
            failures = self._failing.get(url, (0, 0.0))[0] + 1
            pause = backoff(failures, self.policy, random.random()).total_seconds()
            self._failing[url] = (failures, time.monotonic() + pause)
            log.warning("webhook receiver %s failing; pausing it %.0f s", url, pause)
        return sent

    async def _request(self, delivery: Delivery) -> tuple[bytes, dict[str, str]]:
        """The body and the headers that sign it."""
        now = self.clock()
        if delivery.endpoint_id is None and self.format == "slackwater":
            body = await self._batch_body(delivery)
            signed = (
                {SIGNATURE_HEADER: sign(self.secret, int(now.timestamp()), body)}
                if self.secret
                else {}
            )
            return body, signed
        event_id = delivery.event_id or f"evt_{delivery.id}"
        body = delivery.payload
        if delivery.event_id is None:  # written before events had ids
            body = event_json(event_id, delivery.event, delivery.batch_id, now)
        if delivery.endpoint is not None:
            secrets = delivery.endpoint.secrets(now)
        else:
            secrets = [self.secret] if self.secret else []
        return body, standard_headers(event_id, body, secrets, now)

    async def _batch_body(self, delivery: Delivery) -> bytes:
        try:
            batch = await self.store.get_batch(None, delivery.batch_id)
        except NotFound:
            data: dict[str, object] = {"id": delivery.batch_id}
        else:
            data = {
                "id": batch.id,
                "object": "batch",
                "status": batch.status.value,
                "endpoint": batch.endpoint,
                "output_file_id": batch.output_file_id,
                "error_file_id": batch.error_file_id,
                "request_counts": batch.request_counts.__dict__,
                "metadata": batch.metadata,
            }
        event = {
            "id": f"evt_{delivery.id}",
            "object": "event",
            "type": delivery.event,
            "created_at": to_unix(self.clock()),
            "data": data,
        }
        return json.dumps(event, separators=(",", ":")).encode()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self._client.post(
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "slackwater-webhooks",
                **headers,
            },
        )

    async def _send(self, url: str, delivery: Delivery) -> int:
        body, headers = await self._request(delivery)
        try:
            response = await self.post(url, body, headers)
            error = None if response.is_success else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = repr(exc)
        if error is None:
            await self.store.delivered(delivery.id, self.clock())
            return 1
        attempts = delivery.attempts + 1
        next_at = (
            self.clock() + backoff(attempts, self.policy, random.random())
            if attempts < self.policy.max_attempts
            else None
        )
        log.warning("webhook %s for %s failed (%s)", delivery.event, delivery.batch_id, error)
        await self.store.delivery_failed(delivery.id, error, next_at)
        return 0
