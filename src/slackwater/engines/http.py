"""The http engine: forwards requests to any OpenAI-compatible server.

Options: `base_url` (e.g. http://127.0.0.1:8001/v1), `api_key`, `upstream_model` (the
model name the server knows, if not ours), `concurrency` (in-flight requests, default 8),
`timeout` (seconds, default 120), `max_retries` (on 429, 5xx and network errors,
default 4) with exponential backoff from `backoff_seconds` (default 0.5) and jitter,
honouring `Retry-After`; `service_tier` (e.g. `flex`): asked of the server on every call,
and what the ledger bills the call at (the model's `tier_prices`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

from slackwater.domain.model import Model
from slackwater.domain.request import Outcome, Usage
from slackwater.engines.upstream import RETRY_STATUSES, Upstream


class HttpEngine:
    serial = False  # up to `concurrency` calls in flight

    def __init__(self, model: Model, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.model = model
        options = model.options
        self.upstream_model = options.get("upstream_model")
        self.service_tier = options.get("service_tier")
        self._limit = asyncio.Semaphore(int(options.get("concurrency", 8)))
        headers = (
            {"Authorization": f"Bearer {options['api_key']}"} if options.get("api_key") else {}
        )
        self.upstream = Upstream(model, headers, transport)
        self.base_url = self.upstream.base_url

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.upstream.close()

    async def run(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._one(endpoint, body) for body in bodies)))

    async def _one(self, endpoint: str, body: dict[str, Any]) -> Outcome:
        payload = dict(body)
        if self.upstream_model:
            payload["model"] = self.upstream_model
        if self.service_tier:
            payload["service_tier"] = self.service_tier
        try:
            async with self._limit:
                response = await self.upstream.send("POST", endpoint, json=payload)
        except httpx.HTTPError as exc:
            return Outcome.error(
                502,
                f"upstream {self.base_url} unreachable: {exc!r}",
                code="upstream_error",
                retryable=True,
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return Outcome.error(
                502,
                f"upstream answered HTTP {response.status_code} with a body that is not JSON",
                code="upstream_error",
                retryable=response.status_code in RETRY_STATUSES,
            )
        if response.is_success:
            data["model"] = self.model.name
            usage = data.get("usage") or {}
            return Outcome(
                response.status_code,
                data,
                Usage(
                    int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                ),
            )
        return Outcome(response.status_code, data, retryable=response.status_code in RETRY_STATUSES)
