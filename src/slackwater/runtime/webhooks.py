"""Webhooks: deliver batch events from the outbox, signed, retried, never lost.

The store writes an outbox row in the same transaction that gives a batch its final
status, so a crash cannot lose an event; this sender delivers due rows and retries
failures with exponential backoff. Delivery is at least once: receivers should
deduplicate by `id`.

Each POST carries the header `Slackwater-Signature: t=<unix seconds>,v1=<hex>`, where
v1 is HMAC-SHA256 over `"<t>.<body>"` with the configured secret.
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

import httpx

from slackwater.domain.clock import to_unix
from slackwater.domain.errors import NotFound
from slackwater.policy.retry import RetryPolicy, backoff
from slackwater.ports import Clock, Delivery, OutboxStore

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "Slackwater-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = 300) -> bool:
    """Check a signature as a receiver would (also used by the tests)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


class WebhookSender:
    def __init__(
        self,
        store: OutboxStore,
        clock: Clock,
        url: str,
        secret: str | None,
        *,
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
        self.policy = policy or RetryPolicy(max_attempts=10, base_seconds=2, max_seconds=600)
        self.interval = interval
        self.concurrency = concurrency
        self.stopping = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)
        # A receiver that keeps failing is left alone for a while (its events wait in
        # the outbox), rather than tried for every event: (failures in a row, until).
        self._failing = 0
        self._paused_until = float("-inf")

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

    async def send_due(self) -> int:
        """Send what is due, side by side: one slow receiver costs one timeout, not one
        per event."""
        if time.monotonic() < self._paused_until:
            return 0
        due = await self.store.due_deliveries(self.clock(), 50)
        limit = asyncio.Semaphore(self.concurrency)

        async def send(delivery: Delivery) -> int:
            async with limit:
                return await self._send(delivery)

        sent = sum(await asyncio.gather(*(send(d) for d in due)))
        if due and not sent:
            self._failing += 1
            pause = backoff(self._failing, self.policy, random.random()).total_seconds()
            self._paused_until = time.monotonic() + pause
            log.warning("webhook receiver %s failing; pausing it %.0f s", self.url, pause)
        elif sent:
            self._failing = 0
        return sent

    async def _body(self, delivery: Delivery) -> bytes:
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

    async def _send(self, delivery: Delivery) -> int:
        body = await self._body(delivery)
        headers = {"Content-Type": "application/json", "User-Agent": "slackwater-webhooks"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, int(time.time()), body)
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
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
