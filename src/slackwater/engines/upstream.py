"""One HTTP client for engines that call a remote server: retries on 408/409/429/5xx and
network errors, with exponential backoff and jitter, honouring `Retry-After`.

Options read from a model (all optional but `base_url`): `base_url`, `api_key`,
`timeout` (seconds, default 120), `max_retries` (default 4), `backoff_seconds`
(default 0.5).
"""

from __future__ import annotations

from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from slackwater.domain.errors import ConfigError, EngineError
from slackwater.domain.model import Model

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


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


class Upstream:
    def __init__(
        self,
        model: Model,
        headers: dict[str, str],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        options = model.options
        base_url = options.get("base_url")
        if not base_url:
            raise ConfigError(
                f"model {model.name}: the {model.engine} engine needs options.base_url"
            )
        self.base_url = str(base_url).rstrip("/")
        self.max_retries = int(options.get("max_retries", 4))
        self._wait = _Wait(float(options.get("backoff_seconds", 0.5)))
        self.client = httpx.AsyncClient(
            timeout=float(options.get("timeout", 120)), headers=headers, transport=transport
        )

    def url(self, path: str) -> str:
        """`path` as `/v1/...`; a base URL that already ends in /v1 is not doubled."""
        if self.base_url.endswith("/v1"):
            path = path.removeprefix("/v1")
        return self.base_url + path

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response; the last one if retrying ran out. Raises httpx.HTTPError when the
        server could not be reached at all."""
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_should_retry),
                stop=stop_after_attempt(self.max_retries + 1),
                wait=self._wait,
                reraise=True,
            ):
                with attempt:
                    response = await self.client.request(method, self.url(path), **kwargs)
                    if response.status_code in RETRY_STATUSES:
                        raise _Retryable(response)
                    return response
        except _Retryable as exc:
            return exc.response
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self.client.aclose()


async def provider_call(
    upstream: Upstream, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    """A provider API call that must succeed: anything else is an EngineError, retryable
    when the provider was unreachable or answered with a retryable status."""
    try:
        response = await upstream.send(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise EngineError(
            f"provider at {upstream.base_url} unreachable: {exc!r}", retryable=True
        ) from None
    if not response.is_success:
        raise EngineError(
            f"provider answered {method} {path} with HTTP {response.status_code}: "
            f"{response.text[:300]}",
            retryable=response.status_code in RETRY_STATUSES,
        )
    return response


class ProviderEngine:
    """What the provider batch engines share: the model, its upstream, polling."""

    serial = False  # each call is a provider batch of its own

    def __init__(
        self,
        model: Model,
        headers: dict[str, str],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self.upstream_model = model.options.get("upstream_model")
        self.poll_seconds = float(model.options.get("poll_seconds", 30))
        self.upstream = Upstream(model, headers, transport)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.upstream.close()

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = (await provider_call(self.upstream, method, path, **kwargs)).json()
        return data
