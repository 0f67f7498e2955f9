"""Intake: turn a batch's JSONL input file into staged Requests, validating every line.

A file is accepted whole or not at all, as OpenAI does: one bad line fails the batch,
and `errors.data` names every bad line (up to a cap) with its field and reason.
Reading and checking run in a thread, in chunks, so memory stays bounded whatever the
file size and the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from slackwater.domain.batch import Batch, BatchStatus, Endpoint, LineError
from slackwater.domain.bodies import parse_body
from slackwater.domain.errors import Conflict
from slackwater.domain.ids import new_id
from slackwater.domain.model import Catalog
from slackwater.ports import BlobStore, Clock, StagedRequest, Store
from slackwater.runtime.routing import EXTENSION, AutoRouter

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 1000
MAX_CUSTOM_ID = 512
BOM = b"\xef\xbb\xbf"


@dataclass
class LineChecker:
    """Checks one line at a time; remembers custom_ids and the errors found so far."""

    endpoint: str
    catalog: Catalog
    max_line_bytes: int = 64 * 1024 * 1024
    cache: bool = True  # give deterministic requests a key to reuse results by
    router: AutoRouter | None = None  # routes lines asking for model "auto"
    route_defaults: dict[str, Any] = field(default_factory=dict)  # from batch metadata
    outcomes: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    errors: list[LineError] = field(default_factory=list)
    error_lines: int = 0
    seen: set[str] = field(default_factory=set)

    def _fail(self, line: int, code: str, message: str, param: str | None = None) -> None:
        self.error_lines += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(LineError(code=code, message=message, line=line, param=param))

    def check(self, line: int, raw: bytes) -> StagedRequest | None:
        if line == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        try:
            data: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            reason = "not UTF-8" if "utf-8" in str(exc).lower() else str(exc)
            self._fail(line, "invalid_json_line", f"line {line} is not valid JSON: {reason}")
            return None
        if not isinstance(data, dict):
            self._fail(line, "invalid_request", f"line {line} must be a JSON object")
            return None
        errors_before = self.error_lines

        custom_id = data.get("custom_id")
        if custom_id is None:
            self._fail(line, "missing_required_parameter", "custom_id is required", "custom_id")
        elif not isinstance(custom_id, str) or not custom_id:
            self._fail(line, "invalid_type", "custom_id must be a non-empty string", "custom_id")
        elif len(custom_id) > MAX_CUSTOM_ID:
            self._fail(
                line, "invalid_value", f"custom_id is longer than {MAX_CUSTOM_ID}", "custom_id"
            )
        elif custom_id in self.seen:
            self._fail(
                line,
                "duplicate_custom_id",
                f"custom_id {custom_id!r} is used by an earlier line; each must be unique",
                "custom_id",
            )
        else:
            self.seen.add(custom_id)

        method = data.get("method")
        if method != "POST":
            self._fail(line, "invalid_value", f"method must be 'POST', got {method!r}", "method")

        url = data.get("url")
        if url != self.endpoint:
            self._fail(
                line,
                "invalid_url" if isinstance(url, str) else "missing_required_parameter",
                f"url {url!r} does not match the batch's endpoint {self.endpoint!r}",
                "url",
            )

        body = data.get("body")
        checked: tuple[str, bytes | None] | None = None
        if not isinstance(body, dict):
            self._fail(line, "invalid_type", "body must be a JSON object", "body")
        else:
            checked = self._check_body(line, body)

        if self.error_lines > errors_before or checked is None:
            return None
        assert isinstance(body, dict)
        model_name, route = checked
        body.pop(EXTENSION, None)  # slackwater's own field never reaches an engine
        if route is not None:
            body["model"] = model_name
        return StagedRequest(
            line=line,
            custom_id=str(custom_id),
            model=model_name,
            body=orjson.dumps(body),
            cache_key=self._cache_key(model_name, body) if self.cache else None,
            route=route,
        )

    def _cache_key(self, model: str, body: dict[str, Any]) -> str | None:
        """Same model, endpoint and body, and an answer that cannot vary: reuse it."""
        deterministic = self.endpoint == Endpoint.EMBEDDINGS or body.get("temperature") == 0
        if not deterministic:
            return None
        canonical = orjson.dumps({**body, "model": model}, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(self.endpoint.encode() + b"\n" + canonical).hexdigest()

    def _check_body(self, line: int, body: dict[str, Any]) -> tuple[str, bytes | None] | None:
        """The model to run the body on, and the route record when the router chose it."""
        parsed = parse_body(self.endpoint, body, line=line)
        if isinstance(parsed, list):
            for err in parsed:
                self._fail(line, err.code, err.message, err.param)
            return None
        if self.router is not None and (named := self.router.named(parsed.model)) is not None:
            return self._route(line, body, parsed.model, named)
        model = self.catalog.find(parsed.model)
        if model is None:
            self._fail(
                line,
                "model_not_found",
                f"model {parsed.model!r} does not exist; see GET /v1/models",
                "body.model",
            )
            return None
        if not model.serves(self.endpoint):
            self._fail(
                line,
                "model_not_supported",
                f"model {parsed.model!r} does not serve {self.endpoint}",
                "body.model",
            )
            return None
        limit = parsed.token_limit()
        if limit is not None and model.context_window and limit > model.context_window:
            self._fail(
                line,
                "context_length_exceeded",
                f"max tokens {limit} is past {model.name}'s context window "
                f"of {model.context_window}",
                "body.max_tokens",
            )
            return None
        return model.name, None

    def _route(
        self, line: int, body: dict[str, Any], requested: str, named: Mapping[str, Any]
    ) -> tuple[str, bytes] | None:
        assert self.router is not None
        defaults = {**self.route_defaults, **named}
        constraints = self.router.constraints(body.get(EXTENSION), defaults, line)
        if isinstance(constraints, list):
            for err in constraints:
                self._fail(line, err.code, err.message, err.param)
            return None
        choice = self.router.choose(
            self.endpoint, body, constraints, line, self.outcomes, requested
        )
        if isinstance(choice, LineError):
            self._fail(line, choice.code, choice.message, choice.param)
            return None
        return choice

    def read_chunk(
        self, handle: IO[bytes], first_line: int, size: int
    ) -> tuple[list[StagedRequest], int, bool]:
        """Check up to `size` lines; returns (accepted, next line number, at end of file)."""
        accepted: list[StagedRequest] = []
        number = first_line
        while len(accepted) < size:
            raw = handle.readline(self.max_line_bytes + 1)
            if not raw:
                return accepted, number, True
            if len(raw) > self.max_line_bytes and not raw.endswith(b"\n"):
                self._fail(
                    number, "line_too_long", f"line {number} is over {self.max_line_bytes} bytes"
                )
                while (rest := handle.readline(1024 * 1024)) and not rest.endswith(b"\n"):
                    pass
                number += 1
                continue
            stripped = raw.strip()
            if stripped and stripped != BOM:
                staged = self.check(number, stripped)
                if staged is not None:
                    accepted.append(staged)
            number += 1
        return accepted, number, False


class Intake:
    """Validates batches in `validating` and makes them runnable (or fails them)."""

    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        catalog: Catalog,
        clock: Clock,
        *,
        chunk: int = 5000,
        cache: bool = True,
        router: AutoRouter | None = None,
        claim_seconds: float = 30.0,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.catalog = catalog
        self.clock = clock
        self.chunk = chunk
        self.cache = cache
        self.router = router
        self.owner = f"{socket.gethostname()}:{new_id('intake')}"
        # Renewed every chunk: a process that dies lets another take over after this.
        self.claim_seconds = claim_seconds
        self.on_progress = on_progress

    async def ingest(self, batch_id: str) -> Batch:
        batch = await self.store.get_batch(None, batch_id)
        if batch.status is not BatchStatus.VALIDATING:
            return batch
        if not await self._claim(batch_id):
            return batch  # another process is validating it
        # A restart after a crash mid-ingest starts the file over.
        await self.store.drop_staged(batch_id)
        cache = self.cache and (batch.metadata or {}).get("cache", "on") != "off"
        checker = LineChecker(
            batch.endpoint,
            self.catalog,
            cache=cache,
            router=self.router,
            route_defaults=self.router.defaults(batch.metadata) if self.router else {},
            outcomes=await self.store.outcomes() if self.router else {},
        )
        accepted = 0
        handle = await asyncio.to_thread(self.blobs.open, batch.input_file_id)
        try:
            # The next chunk is read and checked while this one is written.
            reading = asyncio.create_task(
                asyncio.to_thread(checker.read_chunk, handle, 1, self.chunk)
            )
            done = False
            while not done:
                rows, line, done = await reading
                if not await self._claim(batch_id):
                    # Stalled past the claim: another process took over; leave it be.
                    log.warning("batch %s: intake taken over by another process", batch_id)
                    reading.cancel()
                    return await self.store.get_batch(None, batch_id)
                if not done:
                    reading = asyncio.create_task(
                        asyncio.to_thread(checker.read_chunk, handle, line, self.chunk)
                    )
                if checker.error_lines == 0:
                    await self.store.stage_requests(batch, rows)
                    accepted += len(rows)
                    if self.on_progress:
                        self.on_progress(len(rows))
        except BaseException:
            if not reading.done():
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
            raise
        finally:
            handle.close()

        if checker.error_lines or accepted == 0:
            await self.store.drop_staged(batch_id)
            errors = checker.errors or [
                LineError(code="empty_file", message="the input file has no requests")
            ]
            if checker.error_lines > len(checker.errors):
                hidden = checker.error_lines - len(checker.errors)
                errors.append(
                    LineError(code="too_many_errors", message=f"{hidden} more lines have errors")
                )
            log.info("batch %s failed validation: %d bad lines", batch_id, checker.error_lines)
            return await self._settle(batch_id, BatchStatus.FAILED, errors)
        return await self._settle(batch_id, BatchStatus.IN_PROGRESS, [])

    async def _claim(self, batch_id: str) -> bool:
        return await self.store.claim_intake(batch_id, self.owner, self.clock(), self.claim_seconds)

    async def _settle(self, batch_id: str, status: BatchStatus, errors: list[LineError]) -> Batch:
        try:
            if status is BatchStatus.IN_PROGRESS:
                return await self.store.activate(batch_id, self.clock())
            return await self.store.move_batch(batch_id, status, self.clock(), errors=errors)
        except Conflict:
            # Cancelled while validating: the monitor finishes it as cancelled.
            await self.store.drop_staged(batch_id)
            return await self.store.get_batch(None, batch_id)
