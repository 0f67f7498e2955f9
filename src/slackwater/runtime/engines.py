"""EngineSet: one Engine per configured model, started on first use."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from slackwater.domain import responses
from slackwater.domain.batch import Endpoint
from slackwater.domain.errors import (
    EngineError,
    NotFound,
    OutOfMemory,
    QuotaExceeded,
    SlackwaterError,
)
from slackwater.domain.ids import new_id
from slackwater.domain.model import Catalog, Model
from slackwater.domain.request import Outcome
from slackwater.domain.text import shown
from slackwater.policy.ledger import Occupancy
from slackwater.ports import Between, Engine
from slackwater.runtime.microbatch import MicroBatcher
from slackwater.runtime.turns import Turns


class _Gate:
    """Realtime calls go first: a batch step waits while any realtime call is waiting;
    on a serial engine, batch steps also go in one at a time, so that no more than one
    is queued in the engine ahead of a realtime call."""

    def __init__(self) -> None:
        self.realtime = 0
        self.clear = asyncio.Event()
        self.clear.set()
        self.batch_step = asyncio.Lock()
        self.turns = Turns()  # realtime calls, between projects (a serial engine)
        self.calls: Counter[str] = Counter()  # realtime calls in flight per project
        self.waited = 0.0  # seconds batch steps waited for realtime calls to clear

    def enter_realtime(self) -> None:
        self.realtime += 1
        self.clear.clear()

    def leave_realtime(self) -> None:
        self.realtime -= 1
        if not self.realtime:
            self.clear.set()


@dataclass(frozen=True)
class Answered:
    """A realtime call, answered: for the ledger."""

    project: str
    model: Model
    endpoint: str
    tier: str
    outcomes: list[Outcome]
    seconds: float


class EngineSet:
    def __init__(
        self,
        catalog: Catalog,
        factory: Callable[[Model], Engine],
        *,
        realtime_calls_per_project: int = 8,
    ) -> None:
        self.catalog = catalog
        self.realtime_calls_per_project = realtime_calls_per_project
        self._factory = factory
        self._engines: dict[str, Engine] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        self._broken: dict[str, SlackwaterError] = {}
        self._gates: dict[str, _Gate] = {}
        self._batchers: dict[str, MicroBatcher] = {}
        self._occupancy: dict[str, Occupancy] = {}
        self.on_answered: Callable[[Answered], None] | None = None

    def occupancy(self, model: str) -> Occupancy:
        """How the model's engine time is shared among the calls in flight on it."""
        return self._occupancy.setdefault(self.model(model).name, Occupancy())

    def model(self, name: str) -> Model:
        model = self.catalog.find(name)
        if model is None:
            raise NotFound(f"The model '{shown(name)}' does not exist", param="model")
        return model

    async def engine(self, name: str) -> Engine:
        model = self.model(name)
        if model.name in self._engines:
            return self._engines[model.name]
        lock = self._starting.setdefault(model.name, asyncio.Lock())
        async with lock:
            if model.name in self._engines:
                return self._engines[model.name]
            if model.name in self._broken:
                raise self._broken[model.name]
            try:
                engine = self._factory(model)
                await engine.start()
            except SlackwaterError as exc:
                self._broken[model.name] = exc
                raise
            self._engines[model.name] = engine
            return engine

    async def run(
        self,
        model: str,
        endpoint: str,
        bodies: Sequence[dict[str, Any]],
        *,
        realtime: bool = False,
        project: str = "default",
        on_text: Callable[[str], None] | None = None,
        tier: str = "default",
    ) -> list[Outcome]:
        """Run bodies on the model; a whole-call failure becomes one error outcome each.

        Realtime calls overtake batch work: a batch step starts only when no realtime
        call waits, so a realtime call waits for at most the batch step in flight
        (however many workers of this process share the engine). On a serial engine
        realtime calls take turns between projects (`Turns`), a call in steps where the
        engine can; a project has at most `realtime_calls_per_project` in flight.
        `on_text` hears a realtime answer's text as it grows, where the engine writes in
        steps (a stream). `on_answered` hears every realtime call answered (the ledger).
        """
        if endpoint == Endpoint.RESPONSES:
            return await self._responses(model, bodies, realtime, project, on_text, tier)
        gate = self._gates.setdefault(self.model(model).name, _Gate())
        if realtime:
            if gate.calls[project] >= self.realtime_calls_per_project:
                raise QuotaExceeded(
                    f"project {project!r} has {gate.calls[project]} realtime calls in flight "
                    f"on {shown(model)}; wait for one to finish"
                )
            gate.calls[project] += 1
            gate.enter_realtime()
            serial = await self.serial(model)

            async def between(text: str) -> None:
                if on_text is not None:
                    on_text(text)
                if serial:
                    await gate.turns.between()

            stepped = between if serial or on_text is not None else None
            try:
                if serial:
                    await gate.turns.take(project)
                started = time.perf_counter()
                try:
                    if endpoint == Endpoint.PREDICTIONS and len(bodies) == 1:
                        outcome, spent = await self._batcher(model).submit(bodies[0])
                        outcomes = [outcome]
                    else:
                        outcomes = await self._run(model, endpoint, list(bodies), stepped)
                        spent = time.perf_counter() - started
                finally:
                    if serial:
                        gate.turns.give()
                if self.on_answered is not None:
                    self.on_answered(
                        Answered(project, self.model(model), endpoint, tier, outcomes, spent)
                    )
                return outcomes
            finally:
                gate.leave_realtime()
                gate.calls[project] -= 1
        one_at_a_time = gate.batch_step if await self.serial(model) else contextlib.nullcontext()
        async with one_at_a_time:
            started = time.perf_counter()
            await gate.clear.wait()
            gate.waited += time.perf_counter() - started
            return await self._run(model, endpoint, list(bodies))

    def _batcher(self, name: str) -> MicroBatcher:
        """The model's micro-batcher of online calls (its options say how it waits)."""
        model = self.model(name)
        batcher = self._batchers.get(model.name)
        if batcher is None:
            options = model.options

            async def run(bodies: list[dict[str, Any]]) -> list[Outcome]:
                return await self._run(model.name, Endpoint.PREDICTIONS.value, bodies)

            batcher = MicroBatcher(
                run,
                max_rows=model.max_batch_size,
                max_latency=float(options.get("max_latency_ms", 10)) / 1000,
                mode=str(options.get("online_batching", "adaptive")),
            )
            self._batchers[model.name] = batcher
        return batcher

    def held_back(self, model: str) -> float:
        """Seconds batch work on `model` has waited for realtime calls, all told: before
        its steps, and (a local engine) within them. Not compute of its own."""
        name = self.model(model).name
        gate = self._gates.get(name)
        within = getattr(self._engines.get(name), "held_back_seconds", 0.0)
        return (gate.waited if gate is not None else 0.0) + float(within)

    async def _responses(
        self,
        model: str,
        bodies: Sequence[dict[str, Any]],
        realtime: bool,
        project: str,
        on_text: Callable[[str], None] | None,
        tier: str,
    ) -> list[Outcome]:
        """Responses run as chat completions; each answer becomes a response object."""
        chats = [responses.chat_of(body) for body in bodies]
        answers = await self.run(
            model,
            Endpoint.CHAT,
            chats,
            realtime=realtime,
            project=project,
            on_text=on_text,
            tier=tier,
        )
        now = int(time.time())
        return [
            replace(
                answer,
                body=responses.response_of(
                    body,
                    id=new_id("resp"),
                    status="completed",
                    created_at=now,
                    service_tier=str(body.get("service_tier") or "default"),
                    chat=answer.body,
                    completed_at=now,
                ),
            )
            if answer.ok
            else answer
            for body, answer in zip(bodies, answers, strict=True)
        ]

    async def serial(self, model: str) -> bool:
        """Whether the model's engine runs one call at a time."""
        try:
            engine = await self.engine(model)
        except SlackwaterError:
            return False  # `_run` reports why, as each request's outcome
        # A plug-in engine that does not say is taken to run calls side by side.
        return bool(getattr(engine, "serial", False))

    async def _run(
        self,
        model: str,
        endpoint: str,
        bodies: list[dict[str, Any]],
        between: Between | None = None,
    ) -> list[Outcome]:
        try:
            engine = await self.engine(model)
            stepping = getattr(engine, "run_in_steps", None)
            if between is not None and stepping is not None and len(bodies) == 1:
                outcomes = [await stepping(endpoint, bodies[0], between)]
            else:
                outcomes = await engine.run(endpoint, bodies)
        except OutOfMemory as exc:
            if len(bodies) == 1:
                return [Outcome.error(exc.status_code, exc.message, code=exc.code)]
            half = len(bodies) // 2  # split and try the halves, down to single requests
            return [
                *await self._run(model, endpoint, bodies[:half]),
                *await self._run(model, endpoint, bodies[half:]),
            ]
        except EngineError as exc:
            outcome = Outcome.error(
                exc.status_code, exc.message, code=exc.code, retryable=exc.retryable
            )
            return [outcome] * len(bodies)
        if len(outcomes) != len(bodies):
            raise EngineError(
                f"engine of {model} returned {len(outcomes)} outcomes for {len(bodies)} requests"
            )
        return outcomes

    async def close(self) -> None:
        engines, self._engines = self._engines, {}
        for engine in engines.values():
            await engine.close()
