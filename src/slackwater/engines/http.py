"""The http engine: forwards requests to any OpenAI-compatible server.

Options: `base_url` (e.g. http://127.0.0.1:8001/v1), `api_key`, `upstream_model` (the
model name the server knows, if not ours), `concurrency` (in-flight requests, default 8),
`timeout` (seconds, default 120), `max_retries` (on 429, 5xx and network errors,
default 4) with exponential backoff from `backoff_seconds` (default 0.5) and jitter,
honouring `Retry-After`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from slackwater.domain.errors import ConfigError
from slackwater.domain.model import Model
from slackwater.domain.request import Outcome, Usage

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _should_retry(exc: BaseException) -> bool:
    return isinstance(exc, _Retryable | httpx.TransportError)


class _Wait:
    """Exponential backoff with jitter, unless the server said how long (Retry-After)."""

    def __init__(self, first: float) -> None:
        self.backoff = wait_exponential_jitter(multiplier=first, max=30, jitter=first)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable):
            after = exc.response.headers.get("retry-after")
            if after and after.replace(".", "", 1).isdigit():
                return min(float(after), 60.0)
        return float(self.backoff(state))


class HttpEngine:
    def __init__(self, model: Model, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.model = model
        options = model.options
        base_url = options.get("base_url")
        if not base_url:
            raise ConfigError(f"model {model.name}: the http engine needs options.base_url")
        self.base_url = str(base_url).rstrip("/")
        self.upstream_model = options.get("upstream_model")
        self.max_retries = int(options.get("max_retries", 4))
        self._wait = _Wait(float(options.get("backoff_seconds", 0.5)))
        self._limit = asyncio.Semaphore(int(options.get("concurrency", 8)))
        headers = (
            {"Authorization": f"Bearer {options['api_key']}"} if options.get("api_key") else {}
        )
        self._client = httpx.AsyncClient(
            timeout=float(options.get("timeout", 120)),
            headers=headers,
            transport=transport,
        )

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self._client.aclose()

    def _url(self, endpoint: str) -> str:
        path = endpoint.removeprefix("/v1") if self.base_url.endswith("/v1") else endpoint
        return self.base_url + path

    async def run(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._one(endpoint, body) for body in bodies)))

    async def _one(self, endpoint: str, body: dict[str, Any]) -> Outcome:
        payload = dict(body)
        if self.upstream_model:
            payload["model"] = self.upstream_model
        try:
            async with self._limit:
                response = await self._post(self._url(endpoint), payload)
        except _Retryable as exc:
            response = exc.response
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

    async def _post(self, url: str, payload: dict[str, Any]) -> httpx.Response:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_should_retry),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            reraise=True,
        ):
            with attempt:
                response = await self._client.post(url, json=payload)
                if response.status_code in RETRY_STATUSES:
                    raise _Retryable(response)
                return response
        raise AssertionError("unreachable")  # pragma: no cover
