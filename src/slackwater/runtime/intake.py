"""Intake: turn a batch's JSONL input file into staged Requests, validating every line.

A file is accepted whole or not at all, as OpenAI does: one bad line fails the batch,
and `errors.data` names every bad line (up to a cap) with its field and reason.
Checking runs in chunks, so memory stays bounded whatever the file size, and off the
event loop: in a thread for small files; for larger ones in a child process, on another
core, while this process writes the rows it sends (two cores ingest about twice as
fast as one, since checking and writing would otherwise share one interpreter lock).
A spare child waits, started ahead of need, so that taking one costs no start-up.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import socket
import sys
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from slackwater.domain.batch import Batch, BatchStatus, LineError
from slackwater.domain.errors import Conflict, NotFound, SlackwaterError
from slackwater.domain.ids import new_id
from slackwater.domain.model import Catalog
from slackwater.ports import BlobStore, Clock, IntakeStore, StagedRequest
from slackwater.runtime import validation
from slackwater.runtime.admission import Admission
from slackwater.runtime.routing import Ask, AutoRouter
from slackwater.runtime.spare import SpareProcess, stop
from slackwater.runtime.validation import LineChecker, cache_key

log = logging.getLogger(__name__)
# Admits (counts) long lines and routes lines asking for a route: (rows, long lines) -> rows.
Place = Callable[[list[StagedRequest], list[int]], list[StagedRequest]]


@dataclass
class LineRouter:
    """Gives lines that ask for "auto" or a named route their model, once validated."""

    router: AutoRouter
    endpoint: str
    cache: bool
    defaults: Mapping[str, Any]  # constraints from the batch's metadata
    outcomes: Mapping[tuple[str, str], tuple[int, int]]

    def route(self, rows: list[StagedRequest], checker: LineChecker) -> list[StagedRequest]:
        """The rows with routes resolved; a line no model fits goes to `checker`'s errors."""
        asking = [row for row in rows if row.model in self.router.routes]
        if not asking:
            return rows
        asks = [Ask(row.line, orjson.loads(row.body), row.model) for row in asking]
        answers = self.router.resolve(
            self.endpoint, asks, defaults=self.defaults, outcomes=self.outcomes
        )
        routed: dict[int, StagedRequest | None] = {}
        for row, answer in zip(asking, answers, strict=True):
            if isinstance(answer, list):
                for err in answer:
                    checker.fail(row.line, err.code, err.message, err.param)
                routed[row.line] = None
                continue
            routed[row.line] = StagedRequest(
                line=row.line,
                custom_id=row.custom_id,
                model=answer.model,
                body=orjson.dumps(answer.body).decode(),
                cache_key=(
                    cache_key(self.endpoint, answer.model, answer.body) if self.cache else None
                ),
                route=answer.route.to_json().decode(),
                prefix=row.prefix,
            )
        # Rows keep their order; a line no model fits is left out.
        kept = (routed.get(row.line, row) for row in rows)
        return [row for row in kept if row is not None]


class Intake:
    """Validates batches in `validating` and makes them runnable (or fails them)."""

    def __init__(
        self,
        store: IntakeStore,
        blobs: BlobStore,
        catalog: Catalog,
        clock: Clock,
        *,
        chunk: int = 5000,
        cache: bool = True,
        router: AutoRouter | None = None,
        admission: Admission | None = None,
        claim_seconds: float = 30.0,
        child_lines: int = 10_000,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.catalog = catalog
        self.clock = clock
        self.chunk = chunk
        self.cache = cache
        self.router = router
        self.admission = admission or Admission(catalog, {})
        self.owner = f"{socket.gethostname()}:{new_id('intake')}"
        # Renewed every chunk: a process that dies lets another take over after this.
        self.claim_seconds = claim_seconds
        self.renew_seconds = min(1.0, claim_seconds / 4)
        # Files of at least this many lines are checked in a child process (0: never);
        # below it, the pipe and the pickling cost more than the second core saves.
        self.child_lines = child_lines
        self.on_progress = on_progress
        # A fresh interpreter, not multiprocessing: no fork of a threaded process, and no
        # re-import of the caller's main module. The loop reads ahead up to twice
        # `limit` while rows are written, so the child keeps checking rather than waiting
        # on a full pipe; it bounds memory too.
        self.checkers = SpareProcess(
            sys.executable, "-m", validation.__name__, limit=4 * 1024 * 1024
        )

    async def start(self) -> None:
        """Have a checking child ready for the first large file."""
        if self.child_lines:
            await self.checkers.refill()

    async def close(self) -> None:
        await self.checkers.close()

    async def ingest(self, batch_id: str) -> Batch:
        batch = await self.store.get_batch(None, batch_id)
        if batch.status is not BatchStatus.VALIDATING:
            return batch
        if not await self._claim(batch_id):
            return batch  # another process is validating it
        # A restart after a crash mid-ingest starts the file over.
        await self.store.drop_staged(batch_id)
        cache = self.cache and (batch.metadata or {}).get("cache", "on") != "off"
        routes = frozenset(self.router.routes) if self.router else frozenset()
        checker = LineChecker(batch.endpoint, self.catalog, cache=cache, routes=routes)
        router = (
            LineRouter(
                self.router,
                batch.endpoint,
                cache,
                self.router.defaults(batch.metadata),
                await self.store.outcomes(),
            )
            if self.router
            else None
        )
        try:
            file = await self.store.get_file(None, batch.input_file_id)
            await self.blobs.size(file.id)  # NotFound if the content is gone
        except NotFound:
            # Deleted behind the API's back (the API refuses while a batch validates).
            missing = LineError(
                code="input_file_missing",
                message=f"input file {batch.input_file_id} was deleted before the batch "
                "was validated; upload it again and create a new batch",
                param="input_file_id",
            )
            return await self._settle(batch_id, BatchStatus.FAILED, [missing])
        in_child = 0 < self.child_lines <= file.lines
        where = "child process" if in_child else "thread"
        log.info("batch %s: checking %d lines in a %s", batch_id, file.lines, where)
        check = self._check_in_child if in_child else self._check_in_thread

        def place(rows: list[StagedRequest], long_lines: list[int]) -> list[StagedRequest]:
            """Count the long lines' tokens and route the lines that ask for a route: the
            tokenizers and the router are in this process, not in a checking child."""
            rows = self.admission.check_rows(batch.endpoint, rows, long_lines, checker)
            return router.route(rows, checker) if router is not None else rows

        chunks = check(batch.input_file_id, checker, place)
        accepted = 0
        try:
            renewed = time.monotonic()
            async for rows in chunks:
                # Renewing the claim also notices a cancel; once a second is often enough.
                if time.monotonic() - renewed >= self.renew_seconds:
                    if not await self._claim(batch_id):
                        # Stalled past the claim: another process took over, or the batch
                        # was cancelled; leave it be.
                        log.warning("batch %s: intake stopped, claim lost", batch_id)
                        return await self.store.get_batch(None, batch_id)
                    renewed = time.monotonic()
                if checker.error_lines == 0:
                    await self.store.stage_requests(batch, rows)
                    accepted += len(rows)
                    if self.on_progress:
                        self.on_progress(len(rows))
        finally:
            await chunks.aclose()

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
            settled = await self._settle(batch_id, BatchStatus.FAILED, errors)
        else:
            settled = await self._settle(batch_id, BatchStatus.IN_PROGRESS, [])
        if in_child:
            # After settling, so that its start does not slow the last writes; and only
            # after a child that worked: a failing start would fail the next one too.
            await self.checkers.refill()
        return settled

    async def _check_in_thread(
        self, key: str, checker: LineChecker, place: Place
    ) -> AsyncGenerator[list[StagedRequest]]:
        handle = await asyncio.to_thread(self.blobs.open, key)
        sizes = validation.chunk_sizes(self.chunk)

        def step(line: int) -> tuple[list[StagedRequest], int, bool]:
            rows, line, done = checker.read_chunk(handle, line, next(sizes))
            return place(rows, checker.take_long_lines()), line, done

        # The next chunk is read and checked while the caller writes this one.
        reading = asyncio.create_task(asyncio.to_thread(step, 1))
        try:
            done = False
            while not done:
                rows, line, done = await reading
                if not done:
                    reading = asyncio.create_task(asyncio.to_thread(step, line))
                yield rows
        finally:
            if not reading.done():
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
            handle.close()

    async def _check_in_child(
        self, key: str, checker: LineChecker, place: Place
    ) -> AsyncGenerator[list[StagedRequest]]:
        child = await self.checkers.take()
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(pickle.dumps((self.blobs.path(key), checker, self.chunk)))
        child.stdin.close()
        seen_errors = 0
        try:
            errors = None
            while errors is None:
                try:
                    size = int.from_bytes(await child.stdout.readexactly(8), "little")
                    frame = await child.stdout.readexactly(size)
                except asyncio.IncompleteReadError:
                    code = await child.wait()
                    raise SlackwaterError(
                        f"the process checking {key} stopped early (exit code {code})"
                    ) from None
                rows, error_lines, errors, long_lines = validation.read_frame(frame)
                checker.absorb(errors or [], error_lines - seen_errors)
                seen_errors = error_lines
                if rows and (long_lines or self.router is not None):
                    rows = await asyncio.to_thread(place, rows, long_lines)
                yield rows
        finally:
            await stop(child)

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
