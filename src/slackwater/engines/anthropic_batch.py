"""The anthropic_batch engine: chat requests through Anthropic's Message Batches API.

Each engine call becomes one message batch (`POST /v1/messages/batches`), polled
(`GET /v1/messages/batches/{id}`) until `processing_status` is `ended`, whose results
(JSONL at `results_url`) are mapped back by `custom_id`. Chat completion bodies are
translated to Messages API params (system messages to `system`, `max_tokens`
required, `stop` to `stop_sequences`) and answers back to chat.completion objects, so
callers see OpenAI's format. `errored` results keep their error; `canceled` and
`expired` ones come back as retryable errors and are queued again.

Options: `base_url` (e.g. https://api.anthropic.com), `api_key`, `upstream_model`,
`poll_seconds` (default 30), `default_max_tokens` (default 1024), `anthropic_version`
(default 2023-06-01), and the retry options of every remote engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from slackwater.domain.errors import EngineError
from slackwater.domain.model import Model
from slackwater.domain.request import Outcome, Usage
from slackwater.engines import responses
from slackwater.engines.upstream import ProviderEngine, provider_call

FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
# Anthropic error types -> (HTTP status, retryable)
ERRORS = {
    "invalid_request_error": (400, False),
    "authentication_error": (401, False),
    "permission_error": (403, False),
    "not_found_error": (404, False),
    "request_too_large": (413, False),
    "rate_limit_error": (429, True),
    "api_error": (500, True),
    "overloaded_error": (529, True),
}


class AnthropicBatchEngine(ProviderEngine):
    def __init__(self, model: Model, transport: httpx.AsyncBaseTransport | None = None) -> None:
        options = model.options
        headers = {"anthropic-version": str(options.get("anthropic_version", "2023-06-01"))}
        if options.get("api_key"):
            headers["x-api-key"] = str(options["api_key"])
        super().__init__(model, headers, transport)
        self.default_max_tokens = int(options.get("default_max_tokens", 1024))

    async def run(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        if not bodies:
            return []  # a provider refuses an empty batch
        if endpoint != "/v1/chat/completions":
            raise EngineError(
                f"model {self.model.name}: Message Batches serve chat completions only"
            )
        requests = [
            {"custom_id": str(i), "params": self.params(body)} for i, body in enumerate(bodies)
        ]
        batch = await self._json("POST", "/v1/messages/batches", json={"requests": requests})
        while batch["processing_status"] != "ended":
            await asyncio.sleep(self.poll_seconds)
            batch = await self._json("GET", f"/v1/messages/batches/{batch['id']}")
        found = await self._results(batch)
        missing = Outcome.error(
            503,
            "the message batch ended without a result for this request",
            code="provider_batch_missing",
            retryable=True,
        )
        return [found.get(str(i), missing) for i in range(len(bodies))]

    def params(self, body: dict[str, Any]) -> dict[str, Any]:
        """A chat completion body as Messages API params (system messages joined)."""
        system = []
        messages = []
        for message in body.get("messages", []):
            content = message.get("content")
            if isinstance(content, list):  # OpenAI content parts: keep the text ones
                content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
            if message.get("role") in ("system", "developer"):
                system.append(str(content))
            else:
                messages.append({"role": message["role"], "content": content})
        params: dict[str, Any] = {
            "model": self.upstream_model or body.get("model"),
            "max_tokens": body.get("max_completion_tokens")
            or body.get("max_tokens")
            or self.default_max_tokens,
            "messages": messages,
        }
        if system:
            params["system"] = "\n\n".join(system)
        for name in ("temperature", "top_p"):
            if body.get(name) is not None:
                params[name] = body[name]
        stop = body.get("stop")
        if stop:
            params["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        return params

    async def _results(self, batch: dict[str, Any]) -> dict[str, Outcome]:
        url = batch.get("results_url")
        if not url:
            return {}
        path = httpx.URL(url).path if "://" in url else url
        response = await provider_call(self.upstream, "GET", path)
        out = {}
        for raw in response.content.splitlines():
            if raw.strip():
                line = orjson.loads(raw)
                out[str(line["custom_id"])] = self._outcome(line["result"])
        return out

    def _outcome(self, result: dict[str, Any]) -> Outcome:
        kind = result.get("type")
        if kind == "succeeded":
            return self._chat(result["message"])
        if kind == "errored":
            error = (result.get("error") or {}).get("error") or {}
            status, retryable = ERRORS.get(error.get("type", ""), (500, True))
            return Outcome.error(
                status,
                error.get("message") or "errored at the provider",
                code=error.get("type"),
                retryable=retryable,
            )
        return Outcome.error(
            503,
            f"the message batch {kind} this request before it ran",
            code=f"provider_batch_{kind}",
            retryable=True,
        )

    def _chat(self, message: dict[str, Any]) -> Outcome:
        text = "".join(
            b.get("text", "") for b in message.get("content", []) if b.get("type") == "text"
        )
        usage = message.get("usage") or {}
        tokens = Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))
        finish = FINISH.get(message.get("stop_reason") or "", "stop")
        return responses.chat_completion(self.model.name, text, finish, tokens)
