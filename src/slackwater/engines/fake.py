"""The fake engine: deterministic answers with configurable latency and failures.

For tests and for benchmarks of the queue itself; never a default. Options:
`start_ms` to start (as loading a model), `latency_ms` per call, `item_latency_ms` per
request, `busy_ms` per call spent in a
thread that nothing can interrupt (as a native kernel: cancelling the call does not stop
it), `failure_rate` (0..1, decided by a hash of the body, so the same request always
fails the same way), `failure_status` (default 500, retryable), `fits` (a larger engine
batch raises OutOfMemory, as a GPU would), `json_answers` (answer a JSON object instead
of text), `dimensions` of embeddings, `serial` (run one call at a time, as a local model
on one device does), and `call_log`: a file that gets one line per request run (its
`user` field, or a digest of the body, and the Unix time the call started), to prove
that nothing runs twice; `crash_on`: a call holding a request whose `user` is this value
ends the engine's process at once, as a native crash would (for engines in a process of
their own: Ray actors).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import orjson

from slackwater.domain.batch import Endpoint
from slackwater.domain.errors import OutOfMemory
from slackwater.domain.model import Model
from slackwater.domain.request import Outcome, Usage
from slackwater.engines import responses


def _append(path: str, text: str) -> None:
    with open(path, "a") as log:
        log.write(text)


def _digest(body: dict[str, Any]) -> bytes:
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=16).digest()


def _unit(digest: bytes) -> float:
    """A number in [0, 1) fixed by the digest: the same body always fails or never does."""
    return int.from_bytes(digest[:4], "big") / 2**32


class FakeEngine:
    def __init__(self, model: Model) -> None:
        self.model = model
        options = model.options
        self.latency = float(options.get("latency_ms", 0)) / 1000
        self.item_latency = float(options.get("item_latency_ms", 0)) / 1000
        self.busy = float(options.get("busy_ms", 0)) / 1000
        self.start_seconds = float(options.get("start_ms", 0)) / 1000
        self.failure_rate = float(options.get("failure_rate", 0))
        self.failure_status = int(options.get("failure_status", 500))
        self.dimensions = int(options.get("dimensions", 8))
        self.call_log: str | None = options.get("call_log")
        self.fits = int(options.get("fits", 0))
        self.json_answers = bool(options.get("json_answers", False))
        self.serial = bool(options.get("serial", False))
        self.crash_on: str | None = options.get("crash_on")
        self._device = asyncio.Lock()
        self.calls = 0

    async def start(self) -> None:
        await asyncio.sleep(self.start_seconds)

    async def close(self) -> None:
        return None

    async def run(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        if not self.serial:
            return await self._call(endpoint, bodies)
        async with self._device:
            return await self._call(endpoint, bodies)

    async def _call(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        self.calls += 1
        started = time.time()
        if self.fits and len(bodies) > self.fits:
            raise OutOfMemory(f"{len(bodies)} requests do not fit; at most {self.fits} do")
        if self.crash_on is not None and any(b.get("user") == self.crash_on for b in bodies):
            os._exit(70)
        delay = self.latency + self.item_latency * len(bodies)
        if delay:
            await asyncio.sleep(delay)
        if self.busy:
            await asyncio.to_thread(time.sleep, self.busy)
        if self.call_log:
            names = "".join(f"{b.get('user') or _digest(b).hex()} {started:.6f}\n" for b in bodies)
            await asyncio.to_thread(_append, self.call_log, names)
        return [self._answer(endpoint, body) for body in bodies]

    def _answer(self, endpoint: str, body: dict[str, Any]) -> Outcome:
        if self.failure_rate and _unit(_digest(body)) < self.failure_rate:
            return Outcome.error(
                self.failure_status,
                "fake engine failure",
                code="engine_failure",
                retryable=self.failure_status >= 500 or self.failure_status == 429,
            )
        if endpoint == Endpoint.EMBEDDINGS:
            inputs = responses.inputs_of(body)
            vectors = [self._vector(json.dumps(item)) for item in inputs]
            tokens = sum(len(str(item).split()) for item in inputs)
            return responses.embeddings(
                self.model.name, vectors, tokens, body.get("encoding_format")
            )
        prompt = self._prompt(endpoint, body)
        words = prompt.split()
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 16
        answer = ["echo:", *words][:limit]
        usage = Usage(prompt_tokens=len(words), completion_tokens=len(answer))
        finish = "length" if len(words) + 1 > limit else "stop"
        text = json.dumps({"echo": " ".join(words)}) if self.json_answers else " ".join(answer)
        if endpoint == Endpoint.CHAT:
            return responses.chat_completion(self.model.name, text, finish, usage)
        return responses.completion(self.model.name, text, finish, usage)

    def _prompt(self, endpoint: str, body: dict[str, Any]) -> str:
        if endpoint == Endpoint.CHAT:
            content = body["messages"][-1].get("content") or ""
            return content if isinstance(content, str) else json.dumps(content)
        prompt = body["prompt"]
        return prompt if isinstance(prompt, str) else " ".join(prompt)

    def _vector(self, text: str) -> list[float]:
        seed = hashlib.blake2b(text.encode(), digest_size=64).digest()
        raw = [(seed[i % 64] - 127.5) / 127.5 for i in range(self.dimensions)]
        norm = sum(v * v for v in raw) ** 0.5 or 1.0
        return [v / norm for v in raw]
