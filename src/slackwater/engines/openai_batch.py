"""The openai_batch engine: runs requests through a provider's OpenAI Batch API.

Each engine call becomes one provider batch: the requests are uploaded as a JSONL file
(`POST /v1/files`, purpose `batch`), submitted (`POST /v1/batches`), polled
(`GET /v1/batches/{id}`) until the batch ends, and the output and error files are
downloaded and mapped back by `custom_id`. A provider batch that ends `expired` or
`cancelled` returns its finished lines; the rest come back as retryable errors and
are queued again.

A worker that dies while a provider batch runs does not pay for it twice: the batch is
tagged with a hash of its contents (`metadata.slackwater_key`), and the same chunk
submitted again picks up the running (or finished) provider batch instead.

Options: `base_url` (e.g. https://api.openai.com/v1), `api_key`, `upstream_model`,
`poll_seconds` (default 30), `completion_window` (default 24h), and the retry options
of every remote engine (`timeout`, `max_retries`, `backoff_seconds`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from slackwater.domain.model import Model
from slackwater.domain.request import Outcome, Usage
from slackwater.engines.upstream import RETRY_STATUSES, ProviderEngine, provider_call

ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
LIVE = frozenset({"validating", "in_progress", "finalizing", "completed", "cancelling"})


class OpenAIBatchEngine(ProviderEngine):
    def __init__(self, model: Model, transport: httpx.AsyncBaseTransport | None = None) -> None:
        key = model.options.get("api_key")
        super().__init__(model, {"Authorization": f"Bearer {key}"} if key else {}, transport)
        self.window = str(model.options.get("completion_window", "24h"))

    async def run(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        if not bodies:
            return []  # a provider refuses an empty batch
        lines = [
            {
                "custom_id": str(i),
                "method": "POST",
                "url": endpoint,
                "body": {**body, "model": self.upstream_model or body.get("model")},
            }
            for i, body in enumerate(bodies)
        ]
        content = b"".join(orjson.dumps(line) + b"\n" for line in lines)
        key = hashlib.sha256(endpoint.encode() + b"\n" + content).hexdigest()[:32]
        batch = await self._existing(key) or await self._submit(endpoint, content, key)
        while batch["status"] not in ENDED:
            await asyncio.sleep(self.poll_seconds)
            batch = await self._json("GET", f"/v1/batches/{batch['id']}")
        if batch["status"] == "failed":
            message = _batch_errors(batch)
            return [
                Outcome.error(
                    400, f"the provider rejected the batch: {message}", code="provider_batch_failed"
                )
                for _ in bodies
            ]
        found: dict[str, Outcome] = {}
        for file_id in (batch.get("output_file_id"), batch.get("error_file_id")):
            if file_id:
                found.update(await self._results(file_id))
        missing = Outcome.error(
            503,
            f"the provider batch ended {batch['status']} before this request ran",
            code=f"provider_batch_{batch['status']}",
            retryable=True,
        )
        return [found.get(str(i), missing) for i in range(len(bodies))]

    async def _existing(self, key: str) -> dict[str, Any] | None:
        """A provider batch already made from this exact chunk (a worker died on it)."""
        after: str | None = None
        while True:
            params = {"limit": 100, **({"after": after} if after else {})}
            page = await self._json("GET", "/v1/batches", params=params)
            for batch in page.get("data", []):
                tag = (batch.get("metadata") or {}).get("slackwater_key")
                if tag == key and batch.get("status") in LIVE:
                    live: dict[str, Any] = batch
                    return live
            if not page.get("has_more") or not page.get("data"):
                return None
            after = page["data"][-1]["id"]

    async def _submit(self, endpoint: str, content: bytes, key: str) -> dict[str, Any]:
        file = await self._json(
            "POST",
            "/v1/files",
            files={"file": (f"slackwater-{key}.jsonl", content, "application/jsonl")},
            data={"purpose": "batch"},
        )
        return await self._json(
            "POST",
            "/v1/batches",
            json={
                "input_file_id": file["id"],
                "endpoint": endpoint,
                "completion_window": self.window,
                "metadata": {"slackwater_key": key, "slackwater_model": self.model.name},
            },
        )

    async def _results(self, file_id: str) -> dict[str, Outcome]:
        response = await provider_call(self.upstream, "GET", f"/v1/files/{file_id}/content")
        out = {}
        for raw in response.content.splitlines():
            if raw.strip():
                line = orjson.loads(raw)
                out[str(line["custom_id"])] = self._outcome(line)
        return out

    def _outcome(self, line: dict[str, Any]) -> Outcome:
        answer = line.get("response")
        if not answer:
            error = line.get("error") or {}
            code = error.get("code") or "provider_error"
            return Outcome.error(
                503,
                error.get("message") or "the provider returned no response",
                code=code,
                retryable=True,
            )
        status = int(answer.get("status_code", 500))
        body = answer.get("body") or {}
        if 200 <= status < 300:
            body["model"] = self.model.name
            usage = body.get("usage") or {}
            tokens = Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
            return Outcome(status, body, tokens)
        return Outcome(status, body, retryable=status in RETRY_STATUSES)


def _batch_errors(batch: dict[str, Any]) -> str:
    errors = (batch.get("errors") or {}).get("data") or []
    parts = [
        f"line {e['line']}: {e.get('message')}"
        if e.get("line") is not None
        else str(e.get("message"))
        for e in errors
    ]
    return "; ".join(parts) or "no reason given"
