"""Worker: lease a chunk of requests of one model, run it in engine batches, record.

Results are recorded in the background at least every `flush_seconds` while the chunk
runs, so request counts move live and a crash loses at most that much finished work.
A heartbeat keeps the lease alive while the engine works; if the worker dies, the lease
runs out and the monitor gives the requests back to the queue.

Before running, a chunk's deterministic requests are looked up in the result cache, and
identical requests within the chunk run once. Retryable failures (429, 5xx, timeouts)
are put aside with exponential backoff until their attempts run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from slackwater.domain.errors import SlackwaterError
from slackwater.domain.ids import new_id
from slackwater.domain.model import Model, Tier
from slackwater.domain.pool import Pool, PoolKind
from slackwater.domain.request import Outcome, Request, Result, Usage
from slackwater.domain.route import RouteRecord
from slackwater.policy import fairness
from slackwater.policy.batching import Gather, StepTime, wait_seconds
from slackwater.policy.cascade import escalate
from slackwater.policy.checks import Check, failed_check
from slackwater.policy.ledger import charges, reused
from slackwater.policy.retry import RetryPolicy, retry_decision
from slackwater.ports import CachedResult, Clock, Escalation, Lease, Retry, Settlement, WorkerStore
from slackwater.runtime.engines import EngineSet
from slackwater.runtime.metrics import Metrics
from slackwater.runtime.placement import Placement

log = logging.getLogger(__name__)


# Engine calls a worker keeps in flight on an engine that runs calls side by side.
CALLS_IN_FLIGHT = 2


class Worker:
    def __init__(
        self,
        store: WorkerStore,
        engines: EngineSet,
        clock: Clock,
        *,
        lease_size: int = 256,
        lease_seconds: float = 60.0,
        poll_seconds: float = 0.2,
        flush_seconds: float = 0.5,
        retry_policy: RetryPolicy | None = None,
        cache_ttl: timedelta | None = None,
        models: list[str] | None = None,
        on_recorded: Callable[[int], None] | None = None,
        metrics: Metrics | None = None,
        pool: Pool | None = None,
        placement: Placement | None = None,
        venues: Sequence[Pool] = (),
        checks: Mapping[str, Check] | None = None,
        max_batch_wait: float = 0.0,
        batch_look_seconds: float = 0.02,
        pack_prefixes: bool = True,
    ) -> None:
        self.store = store
        self.engines = engines
        self.clock = clock
        self.lease_size = lease_size
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.flush_seconds = flush_seconds
        self.retry_policy = retry_policy or RetryPolicy()
        self.cache_ttl = cache_ttl
        self.models = models or engines.catalog.names()
        self.owner = f"{socket.gethostname()}:{new_id('worker')}"
        self.on_recorded = on_recorded
        self.metrics = metrics
        self.pool = pool or Pool("local", PoolKind.LOCAL)
        self.placement = placement
        self.checks = dict(checks or {})
        # Micro-batching: wait up to this long for an engine batch to fill (policy.batching),
        # learning each model's step time as it runs.
        self.max_batch_wait = max_batch_wait
        self.batch_look_seconds = batch_look_seconds
        # Lease requests whose prompts share a leading part together, so that an
        # engine's prefix cache (vLLM's) computes it once.
        self.pack_prefixes = pack_prefixes
        self.step_times: dict[str, StepTime] = {}
        self._allowed: list[str] | None = None  # the batches placement lets it lease now
        self._widest = max(
            (m.max_batch_size for m in engines.catalog.models if m.name in self.models),
            default=1,
        )
        # Provider pools (batch or realtime APIs) that bill their models' requests, not
        # this worker's own pool: the machine only waits on them.
        self.venues = {m: v for v in venues for m in v.models}
        self._lease: Lease | None = None
        self._step: asyncio.Task[int] | None = None
        self._seen = float("-inf")
        # Check results of auto-routed answers, (model, task) -> [passed, failed]: they
        # feed back into the router's quality estimates.
        self._outcomes: dict[tuple[str, str], list[int]] = {}
        self.stopping = asyncio.Event()
        self._woken = asyncio.Event()

    async def run(self) -> None:
        """Work until `stop()` is called; a chunk in flight is finished first."""
        try:
            while not self.stopping.is_set():
                await self._announce()
                self._step = asyncio.create_task(self.step())
                try:
                    done = await self._step
                except asyncio.CancelledError:
                    if not self.stopping.is_set():
                        raise
                    await self._abandon()
                    break
                except Exception:  # a bad chunk must not kill the worker; its lease runs out
                    log.exception("worker step failed")
                    done = 0
                if not done:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._woken.wait(), self.poll_seconds)
                    self._woken.clear()
        finally:
            with contextlib.suppress(Exception):
                await self.store.worker_gone(self.owner)

    def stop(self) -> None:
        self.stopping.set()
        self._woken.set()

    def wake(self) -> None:
        """Look at the queue now, not at the next poll (a call was queued here)."""
        self._woken.set()

    def drain(self, seconds: float) -> None:
        """A preemption notice: lease nothing more; finish the chunk in hand if it ends
        within `seconds`, else give what is not recorded back to the queue."""
        self.stop()
        asyncio.get_running_loop().call_later(seconds, self._cut)

    def _cut(self) -> None:
        if self._step is not None and not self._step.done():
            log.warning("drain time is up: giving the rest of the chunk back to the queue")
            self._step.cancel()

    async def _abandon(self) -> None:
        if self._lease is not None:
            await self.store.release(self._lease.id)
            self._lease = None

    async def _announce(self) -> None:
        """Tell the store this worker is alive in its pool (spot capacity, for the planner)."""
        if time.monotonic() - self._seen >= min(5.0, self.lease_seconds / 3):
            try:
                await self.store.worker_seen(
                    self.owner, self.pool.name, self.pool.kind, self.clock()
                )
            except Exception:  # a busy store must not stop the worker; try again later
                log.exception("could not announce the worker")
                return
            self._seen = time.monotonic()

    async def step(self) -> int:
        """Lease and run one chunk; returns how many requests were settled."""
        batches = await self.placement.allowed() if self.placement is not None else None
        self._allowed = batches
        if not await self._gather(batches):
            return 0
        lease = await self.store.lease(
            self.owner,
            self.models,
            self.lease_size,
            self.clock(),
            self.lease_seconds,
            batches,
            pack_prefixes=self.pack_prefixes,
        )
        if lease is None:
            return 0
        self._lease = lease
        beat = asyncio.create_task(self._heartbeat(lease))
        try:
            settled = await self._run(lease)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        self._lease = None  # released by _run; a cancelled step leaves it to _abandon
        return settled

    async def _overtaken(self, model: Model, rest: list[Request]) -> bool:
        """Whether to end this lease before its `rest` and lease again: a request due
        sooner waits (a flex call that came while a long batch's lease runs), or the rest
        is less than an engine batch and requests that came since would fill it out."""
        heads = await self.store.pending_heads(self.models, self._allowed, cap=1)
        if not heads:
            return False
        if len(rest) < model.max_batch_size and model.name in heads:
            return True
        soonest = min(deadline for _, deadline in heads.values())
        return fairness.urgency(soonest) < min(r.urgency for r in rest)

    async def _gather(self, batches: list[str] | None) -> bool:
        """Wait, if it pays, for the engine batch to fill (`policy.batching`); False if
        nothing is pending (a request queued since wakes the worker, which then looks
        at it from the start, rather than leasing it alone)."""
        if self.max_batch_wait <= 0:
            return True
        waited, first = 0.0, None
        while not self.stopping.is_set():
            heads = await self.store.pending_heads(self.models, batches, cap=self._widest)
            if not heads:
                return False
            model, (count, deadline) = min(heads.items(), key=lambda head: head[1][1])
            gather = Gather(
                pending=count,
                max_batch=self.engines.model(model).max_batch_size,
                waited=waited,
                slack=(deadline - self.clock()).total_seconds(),
                arrived=count - (count if first is None else first),
            )
            step = self.step_times.setdefault(model, StepTime())
            pause = wait_seconds(gather, step, self.max_batch_wait, self.batch_look_seconds)
            if pause <= 0:
                return True
            await asyncio.sleep(pause)
            waited = waited + pause
            first = count if first is None else first
        return True

    async def _run(self, lease: Lease) -> int:
        model = self.engines.model(lease.model)
        known = await self._cached(lease)
        by_endpoint: dict[str, list[Request]] = defaultdict(list)
        for request in lease.requests:
            by_endpoint[request.endpoint].append(request)
        # An engine that batches calls side by side (vLLM, a server) gets the next engine
        # batch before the last one ends, so it never drains between them.
        depth = 1 if await self.engines.serial(model.name) else CALLS_IN_FLIGHT
        flight: deque[tuple[list[Request], asyncio.Task[list[Result]]]] = deque()
        settled = 0
        buffer: list[Result] = []
        retries: list[Retry] = []
        escalations: list[Escalation] = []
        writing: asyncio.Task[int] | None = None
        last_flush = time.monotonic()

        async def land() -> None:
            """Take the oldest call's results; write what is due in the background."""
            nonlocal buffer, retries, escalations, writing, last_flush, settled
            chunk, call = flight.popleft()
            for result, request in zip(await call, chunk, strict=True):
                escalation = self._escalation(request, result)
                if escalation is not None:
                    escalations.append(escalation)
                    continue
                decision = retry_decision(
                    result.outcome,
                    request.attempts,
                    self.clock(),
                    self.retry_policy,
                    random.random(),
                )
                if decision.retry and decision.at is not None:
                    spent = result.charge.cost if result.charge else Decimal(0)
                    retries.append(Retry(request.id, decision.at, spent))
                else:
                    buffer.append(result)
            if time.monotonic() - last_flush < self.flush_seconds:
                return
            # Results are written in the background while the engine goes on, with at
            # most one write in flight.
            if writing is not None:
                settled += await writing
            writing = asyncio.create_task(self._flush(lease, buffer, retries, escalations))
            buffer, retries, escalations = [], [], []
            last_flush = time.monotonic()

        try:
            for endpoint, pending in by_endpoint.items():
                for start in range(0, len(pending), model.max_batch_size):
                    if self.stopping.is_set():
                        break  # drain: what is not done goes back to the queue below
                    rest = pending[start:]
                    if start and await self._overtaken(model, rest):
                        break  # the rest goes back to the queue, to be leased anew
                    chunk = pending[start : start + model.max_batch_size]
                    call = asyncio.create_task(self._run_chunk(model, endpoint, chunk, known))
                    flight.append((chunk, call))
                    if len(flight) >= depth:
                        await land()
            while flight:
                await land()
            if writing is not None:
                settled += await writing
                writing = None
            settled += await self._flush(lease, buffer, retries, escalations)
        finally:
            for _, call in flight:
                call.cancel()
            if writing is not None:
                writing.cancel()
        # Anything not recorded (a drain mid-chunk) goes back to the queue now.
        await self.store.release(lease.id)
        return settled

    async def _run_chunk(
        self, model: Model, endpoint: str, chunk: list[Request], known: dict[str, Outcome]
    ) -> list[Result]:
        """Run what is not known yet; identical deterministic requests run once.

        Each result carries its ledger charge: its share of the engine call's time on
        this worker's pool; a reused result costs nothing.
        """
        to_run: list[Request] = []
        keys: set[str] = set()
        for request in chunk:
            key = request.cache_key
            if key is None or (key not in known and key not in keys):
                to_run.append(request)
                if key is not None:
                    keys.add(key)
        # Loading the model is not the requests' compute: it happens before the clock starts
        # (a model that cannot load is reported by `run`, request by request).
        with contextlib.suppress(SlackwaterError):
            await self.engines.engine(model.name)
        occupancy = self.engines.occupancy(model.name)
        started, held_back = time.perf_counter(), self.engines.held_back(model.name)
        share = occupancy.start(started)
        try:
            outcomes = await self.engines.run(model.name, endpoint, [r.body for r in to_run])
        finally:
            shared = occupancy.end(share, time.perf_counter())
        # Time the engine gave realtime calls (charged to them) is not this step's, nor
        # the part of it other calls in flight on the engine had.
        waited = self.engines.held_back(model.name) - held_back
        spent = max(shared - waited, 0.0)
        if to_run:
            self.step_times.setdefault(model.name, StepTime()).add(len(to_run), spent)
        pool = self.venues.get(model.name, self.pool)
        tiers = [r.tier for r in to_run]
        billed = charges(model, pool, outcomes, spent, tiers) if outcomes else []
        ran = {
            r.id: (outcome, charge)
            for r, outcome, charge in zip(to_run, outcomes, billed, strict=True)
        }
        for request, done in zip(to_run, outcomes, strict=True):
            if request.cache_key is not None and done.ok:
                known[request.cache_key] = done
        results = []
        for request in chunk:
            if request.id in ran:
                results.append(Result(request.id, *ran[request.id]))
                continue
            outcome = known.get(request.cache_key or "")
            if outcome is None:
                # A twin in this chunk failed: this copy runs again on its own later.
                outcome = Outcome.error(503, "identical request failed; retrying", retryable=True)
            else:
                outcome = _answered_now(outcome, self.clock())
            results.append(Result(request.id, outcome, reused(model, pool, outcome)))
        return results

    async def _cached(self, lease: Lease) -> dict[str, Outcome]:
        if self.cache_ttl is None:
            return {}
        keys = [r.cache_key for r in lease.requests if r.cache_key]
        hits = await self.store.cached(keys, self.clock())
        return {key: _from_cache(hit) for key, hit in hits.items()}

    def _escalation(self, request: Request, result: Result) -> Escalation | None:
        """For a routed answer that fails its check: the next model up, if any."""
        outcome = result.outcome
        if request.route is None or not outcome.ok:
            return None
        route = RouteRecord.from_json(request.route)
        named = [(n, self.checks[n]) for n in route.checks if n in self.checks]
        failure = failed_check(request.body, outcome.body, route.check_regex, named)
        tally = self._outcomes.setdefault((request.model, route.task or ""), [0, 0])
        tally[0 if failure is None else 1] += 1
        if failure is None:
            return None
        usage = outcome.usage
        if result.charge is not None:  # what the attempt cost where it ran
            cost = result.charge.cost
        else:
            price = self.engines.model(request.model).price_for(Tier.BATCH)
            cost = price.cost(usage.prompt_tokens, usage.completion_tokens)
        higher = escalate(route, failure, cost, usage)
        if higher is None:
            return None  # the best model's answer stands, check failure and all
        body = {**request.body, "model": higher.model}
        return Escalation(request.id, higher.model, orjson.dumps(body), higher.to_json(), cost)

    async def _flush(
        self,
        lease: Lease,
        results: list[Result],
        retries: list[Retry],
        escalations: list[Escalation],
    ) -> int:
        """Write what is settled, in one transaction (docs/decisions/0004)."""
        now = self.clock()
        outcomes, self._outcomes = self._outcomes, {}
        settlement = Settlement(
            results=results,
            retries=retries,
            escalations=escalations,
            outcomes={key: (p, f) for key, (p, f) in outcomes.items()},
            cache_until=now + self.cache_ttl if self.cache_ttl is not None else None,
        )
        stored = await self.store.record(lease.id, settlement, now)
        if self.metrics:
            self.metrics.recorded(lease.model, results)
            if retries:
                self.metrics.retries.labels(lease.model).inc(len(retries))
        if self.on_recorded:
            self.on_recorded(stored)
        return stored

    async def _heartbeat(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            held = await self.store.heartbeat(lease.id, self.clock(), self.lease_seconds)
            if not held:
                log.warning("lease %s was lost (expired and reaped)", lease.id)
                return


def _answered_now(outcome: Outcome, now: datetime) -> Outcome:
    """A reused answer as an answer of its own: a new `id`, created now (the words and
    usage are the earlier answer's)."""
    body = outcome.body
    if "id" not in body and "created" not in body:
        return outcome  # embeddings: nothing names the answer
    fresh = dict(body)
    if isinstance(body.get("id"), str):
        fresh["id"] = new_id(re.split(r"[_-]", body["id"], maxsplit=1)[0] or "resp")
    if "created" in body:
        fresh["created"] = int(now.timestamp())
    return replace(outcome, body=fresh)


def _from_cache(hit: CachedResult) -> Outcome:
    body: dict[str, Any] = orjson.loads(hit.body)
    usage = body.get("usage") or {}
    # Chat and completions count prompt/completion tokens; responses input/output.
    tokens = Usage(
        int(usage.get("prompt_tokens", usage.get("input_tokens", 0))),
        int(usage.get("completion_tokens", usage.get("output_tokens", 0))),
    )
    return Outcome(hit.status_code, body, usage=tokens)
