"""Agent sessions at run time: the agent API (`Agents`, `Context`) and `SessionRunner`,
which resumes due sessions from their journals (domain/sessions.py, ADR 13).

    agents = Agents()

    @agents.agent
    async def review(ctx: Context, repo: str) -> str:
        files = await ctx.step(list_files, repo)           # journalled once
        answers = await ctx.gather(*(ctx.infer(model="m", messages=[...]) for f in files))
        await ctx.sleep(hours=1)                            # suspends: no compute held
        approved = await ctx.wait_for("approval")          # an event sent to the session
        return summarise(answers)

Each activation runs the agent from its start; journalled calls return their values at
once, the first call past the journal's end does its work, and a call that must wait
(an inference not answered yet, a timer, an event not sent yet) ends the activation:
the coroutine is dropped and the session is a row again until it is woken.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson

from slackwater.domain.batch import Endpoint
from slackwater.domain.bodies import EXTENSION
from slackwater.domain.errors import InvalidRequest, NotFound, QuotaExceeded, SlackwaterError
from slackwater.domain.ids import new_id
from slackwater.domain.sessions import (
    Entry,
    EntryKind,
    Session,
    SessionCost,
    SessionStatus,
    Waiting,
    call_id,
)
from slackwater.domain.tiers import ServiceTier
from slackwater.ports import BlobStore, Clock, SessionStore
from slackwater.runtime.calls import ENDED, CallQueue, outcome_of
from slackwater.runtime.loops import run_until
from slackwater.runtime.realtime import Realtime

log = logging.getLogger(__name__)

AgentFunction = Callable[..., Awaitable[Any]]

FULL_TIER_RETRY_SECONDS = 5.0


class SessionError(SlackwaterError):
    """A session cannot go on: its agent failed, or its code no longer replays its journal."""

    status_code = 409
    code = "session_failed"


class InferenceFailed(SlackwaterError):
    """An inference a session made was answered with an error."""

    status_code = 502
    code = "inference_failed"


@dataclass(frozen=True)
class Agent:
    name: str
    run: AgentFunction
    version: str  # a fingerprint of its code


def fingerprint(function: Callable[..., Any]) -> str:
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        source = function.__qualname__
    return hashlib.sha256(source.encode()).hexdigest()[:16]


class Agents:
    """The agents a runner can resume, by name."""

    def __init__(self) -> None:
        self._agents: dict[str, Agent] = {}

    def agent(self, function: AgentFunction | None = None, *, name: str | None = None) -> Any:
        def register(function: AgentFunction) -> AgentFunction:
            if not inspect.iscoroutinefunction(function):
                raise TypeError(f"agent {function.__qualname__} must be an async function")
            agent = Agent(name or function.__name__, function, fingerprint(function))
            self._agents[agent.name] = agent
            return function

        return register(function) if function is not None else register

    def find(self, name: str) -> Agent:
        agent = self._agents.get(name)
        if agent is None:
            known = ", ".join(sorted(self._agents)) or "none"
            raise NotFound(f"No agent named '{name}' (agents: {known})", param="agent")
        return agent

    def __contains__(self, name: str) -> bool:
        return name in self._agents


class _Suspend(BaseException):
    """Ends an activation: the session waits. A BaseException, so an agent's own
    `except Exception` cannot swallow it."""

    def __init__(self, waiting: Waiting) -> None:
        self.waiting = waiting


def _as_json(value: Any, where: str) -> Any:
    """`value` as the journal will give it back on replay (JSON), or a clear error."""
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError as exc:
        raise InvalidRequest(f"{where}: the value cannot be journalled as JSON ({exc})") from None


class Inference:
    """One inference a session asked for: await it, or pass several to `ctx.gather`."""

    def __init__(self, context: Context, seq: int, body: dict[str, Any], tier: str) -> None:
        self.context, self.seq, self.body, self.tier = context, seq, body, tier

    def __await__(self) -> Generator[Any, None, Any]:
        answers = yield from self.context.gather(self).__await__()
        return answers[0]


class Context:
    """What an agent's code is given: its durable calls."""

    def __init__(self, runner: SessionRunner, session: Session, journal: list[Entry]) -> None:
        self.runner = runner
        self.session = session
        self.journal = journal
        self._next = 0
        self._pending: set[int] = set()  # inferences made and not awaited yet

    @property
    def session_id(self) -> str:
        return self.session.id

    def step_key(self) -> str:
        """An idempotency key for the next call (unique to the session and its place):
        for a step whose outside effect must not repeat should it run twice (a crash
        between the effect and its journal entry)."""
        return f"{self.session.id}:{self._next}"

    def _place(self, kind: EntryKind, name: str) -> Entry | None:
        """Take the next place in the journal: its entry on replay, None past the end."""
        if self._pending and kind is not EntryKind.INFER:
            raise SessionError(
                f"session {self.session.id}: await its inferences (or gather them) before "
                f"its next {kind}"
            )
        seq = self._next
        self._next += 1
        if seq >= len(self.journal):
            return None
        entry = self.journal[seq]
        if (entry.kind, entry.name) != (kind, name):
            raise SessionError(
                f"session {self.session.id}: the agent's code no longer replays its journal: "
                f"call {seq} was {entry.kind} {entry.name!r}, now {kind} {name!r}"
            )
        return entry

    async def _write(self, seq: int, kind: EntryKind, name: str, value: Any, **extra: Any) -> None:
        entry = await self.runner.kept(self.session, Entry(seq, kind, name, value))
        if not await self.runner.store.append_entry(
            self.session.id, self.runner.owner, entry, self.runner.clock(), **extra
        ):
            raise _Lost()
        self.journal.append(Entry(seq, kind, name, value))

    async def step(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `function` once for this session; on replay, its journalled result."""
        name = getattr(function, "__qualname__", repr(function))
        entry = self._place(EntryKind.STEP, name)
        if entry is not None:
            return entry.value
        value = function(*args, **kwargs)
        if inspect.isawaitable(value):
            value = await value
        value = _as_json(value, f"step {name}")
        await self._write(self._next - 1, EntryKind.STEP, name, value)
        return value

    def infer(self, *, model: str, tier: str = "flex", **body: Any) -> Inference:
        """A chat completion through the queue on `tier`; await it (or gather several).
        `model` may be "auto" or a named route: the router picks the model, and a
        routed answer that fails its checks climbs the ladder before it comes back."""
        if self._place(EntryKind.INFER, model) is None:
            self._pending.add(self._next - 1)
        return Inference(self, self._next - 1, {"model": model, **body}, tier)

    async def gather(self, *inferences: Inference) -> list[dict[str, Any]]:
        """Wait for all the inferences (queued together); their answers, in order."""
        answers: dict[int, Any] = {}
        missing: list[Inference] = []
        for inference in inferences:
            if inference.seq < len(self.journal):
                answers[inference.seq] = self.journal[inference.seq].value
            else:
                missing.append(inference)
        if missing:
            ids = {i.seq: self.runner.call_id(self.session, i.seq) for i in missing}
            states = await self.runner.calls.store.call_states(list(ids.values()))
            for inference in missing:
                if ids[inference.seq] not in states:
                    try:
                        await self.runner.queue(self.session, inference, ids[inference.seq])
                    except QuotaExceeded:
                        # The tier is full for now: wait a while and queue what is missing
                        # then (what was queued stays queued), rather than fail the run.
                        retry = self.runner.clock() + timedelta(seconds=FULL_TIER_RETRY_SECONDS)
                        raise _Suspend(Waiting(until=retry)) from None
            unfinished = tuple(
                call
                for call in ids.values()
                if call not in states or states[call].status not in ENDED
            )
            if unfinished:
                raise _Suspend(Waiting(calls=unfinished))
            for inference in sorted(missing, key=lambda i: i.seq):
                if inference.seq != len(self.journal):
                    raise SessionError(
                        f"session {self.session.id}: inferences must be awaited in the order "
                        "they were made"
                    )
                state = states[ids[inference.seq]]
                outcome = outcome_of(state)
                body = outcome.body
                if state.route is not None and outcome.ok:  # as the API answers a route
                    body = {**body, EXTENSION: {"route": orjson.loads(state.route)}}
                answer = {"status_code": outcome.status_code, "body": body}
                model = str(inference.body["model"])
                await self._write(inference.seq, EntryKind.INFER, model, answer)
                self._pending.discard(inference.seq)
                answers[inference.seq] = answer
        out = []
        for inference in inferences:
            answer = answers[inference.seq]
            if answer["status_code"] != 200:
                raise InferenceFailed(
                    f"inference {inference.seq} of session {self.session.id} failed: "
                    f"{answer['body']}"
                )
            out.append(answer["body"])
        return out

    async def sleep(
        self, seconds: float = 0, *, minutes: float = 0, hours: float = 0, days: float = 0
    ) -> None:
        """Suspend until the time has passed (the time is fixed when first reached)."""
        span = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)
        entry = self._place(EntryKind.SLEEP, "sleep")
        if entry is None:
            until = self.runner.clock() + span
            await self._write(self._next - 1, EntryKind.SLEEP, "sleep", until.isoformat())
        else:
            until = type(self.runner.clock()).fromisoformat(entry.value)
        if self.runner.clock() < until:
            raise _Suspend(Waiting(until=until))

    # A durable wait, not asyncio's: `timeout` is a time in the session's own terms.
    async def wait_for(self, key: str, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """The next event sent to the session under `key` (one sent before the wait
        counts); None if `timeout` seconds pass first."""
        until = None
        if timeout is not None:
            entry = self._place(EntryKind.SLEEP, f"deadline of {key}")
            if entry is None:
                until = self.runner.clock() + timedelta(seconds=timeout)
                deadline = until.isoformat()
                await self._write(self._next - 1, EntryKind.SLEEP, f"deadline of {key}", deadline)
            else:
                until = type(self.runner.clock()).fromisoformat(entry.value)
        entry = self._place(EntryKind.EVENT, key)
        if entry is not None:
            return entry.value
        event = await self.runner.store.take_event(self.session.id, key)
        if event is not None:
            event_id, payload = event
            await self._write(self._next - 1, EntryKind.EVENT, key, payload, event_id=event_id)
            return payload
        if until is not None and self.runner.clock() >= until:
            await self._write(self._next - 1, EntryKind.EVENT, key, None)
            return None
        raise _Suspend(Waiting(until=until, event=key))


class _Lost(BaseException):
    """This runner no longer holds the session: its activation ends, writing nothing."""


class SessionRunner:
    """Resumes due sessions: each activation replays the journal and runs on to the
    next wait or the end."""

    def __init__(
        self,
        store: SessionStore,
        calls: CallQueue,
        agents: Agents,
        tiers: Mapping[str, ServiceTier],
        clock: Clock,
        blobs: BlobStore,
        prepare: Realtime,
        *,
        price_per_hour: Decimal = Decimal(0),
        inline_bytes: int = 16_384,
        owner: str | None = None,
        lease_seconds: float = 60.0,
        poll_seconds: float = 0.2,
    ) -> None:
        self.store = store
        self.calls = calls
        self.agents = agents
        self.tiers = tiers
        self.clock = clock
        self.blobs = blobs
        self.prepare = prepare  # routes and admits an inference's body
        self.price_per_hour = price_per_hour  # of the machine the agents' code runs on
        self.inline_bytes = inline_bytes  # larger journal values go to the blob store
        self.owner = owner or new_id("agentw")
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self._woken = asyncio.Event()

    async def kept(self, session: Session, entry: Entry) -> Entry:
        """The entry as journalled: a large value (a long prompt's answer, a tool's
        output) is written to the blob store and the journal keeps its name."""
        data = orjson.dumps(entry.value)
        if len(data) <= self.inline_bytes:
            return entry
        key = f"{session.id}.{entry.seq}.json"

        def write() -> None:
            with self.blobs.writer(key) as out:
                out.write(data)

        await asyncio.to_thread(write)
        return Entry(entry.seq, entry.kind, entry.name, None, blob=key)

    async def replayed(self, journal: list[Entry]) -> list[Entry]:
        """The journal with the values kept as blobs read back."""

        def read(key: str) -> Any:
            with self.blobs.open(key) as blob:
                return orjson.loads(blob.read())

        out = []
        for e in journal:
            if e.blob is not None:
                value = await asyncio.to_thread(read, e.blob)
                e = Entry(e.seq, e.kind, e.name, value, created_at=e.created_at)
            out.append(e)
        return out

    async def cost(self, session: Session) -> SessionCost:
        """What the session has cost so far, against always-on compute and realtime
        inference."""
        rows = await self.store.ledger("session", session.project, session=session.id)
        end = session.finished_at or self.clock()
        wall = max((end - session.created_at).total_seconds(), session.active_seconds)
        return SessionCost(
            inferences=sum(r.requests for r in rows),
            prompt_tokens=sum(r.prompt_tokens for r in rows),
            completion_tokens=sum(r.completion_tokens for r in rows),
            inference_cost=sum((r.cost for r in rows), Decimal(0)),
            realtime_cost=sum((r.realtime_cost for r in rows), Decimal(0)),
            active_seconds=session.active_seconds,
            wall_seconds=wall,
            price_per_hour=self.price_per_hour,
        )

    @staticmethod
    def call_id(session: Session, seq: int) -> str:
        return call_id(session.id, seq)

    async def queue(self, session: Session, inference: Inference, call_id: str) -> None:
        tier = self.tiers.get(inference.tier)
        if tier is None or tier.realtime:
            queued = sorted(name for name, t in self.tiers.items() if not t.realtime)
            raise InvalidRequest(
                f"session inferences go through a queued tier ({', '.join(queued)}), "
                f"not {inference.tier!r}",
                param="tier",
            )
        # Routed ("auto", a named route) and checked as an API call is; a bad body or a
        # prompt no model holds is raised into the agent's code.
        ready = await self.prepare.prepare(Endpoint.CHAT.value, inference.body)
        await self.calls.put(
            tier,
            project=session.project,
            model=ready.model.name,
            endpoint=Endpoint.CHAT.value,
            body=ready.body,
            route=ready.route,
            call_id=call_id,
        )

    async def start(self, project: str, agent: str, arguments: Any) -> Session:
        """A new session of `agent` (queued: a runner takes it)."""
        found = self.agents.find(agent)
        session = self._new(project, found.name, found.version, _as_json(arguments, "arguments"))
        await self.store.add_session(session)
        return session

    async def send(self, project: str, session_id: str, key: str, payload: Any) -> None:
        """An event for the session (kept until a `wait_for(key)` takes it)."""
        if not key:
            raise InvalidRequest("an event needs a key", param="key")
        payload = _as_json(payload, "payload")
        await self.store.send_event(project, session_id, key, payload, self.clock())

    async def fork(self, project: str, session_id: str, upto: int) -> Session:
        """A new session that replays the first `upto` journal entries of this one, then
        goes on by itself (with other code or another model, say)."""
        original = await self.store.get_session(project, session_id)
        fork = self._new(
            project,
            original.agent,
            original.version,
            original.arguments,
            steps=upto,
            forked_from=original.id,
            forked_at=upto,
        )
        return await self.store.fork_session(project, session_id, upto, fork)

    def _new(self, project: str, agent: str, version: str, arguments: Any, **extra: Any) -> Session:
        """A new queued session (a runner takes it)."""
        now = self.clock()
        return Session(
            id=new_id("sess"),
            project=project,
            agent=agent,
            version=version,
            arguments=arguments,
            status=SessionStatus.QUEUED,
            created_at=now,
            updated_at=now,
            **extra,
        )

    async def run_due(self, limit: int = 16) -> int:
        """Take the due sessions and run each to its next wait or its end, side by side
        (an activation mostly waits for the store)."""
        now = self.clock()
        due = await self.store.claim_sessions(self.owner, now, self.lease_seconds, limit)
        outcomes = await asyncio.gather(
            *(self.activate(session) for session in due), return_exceptions=True
        )
        for session, outcome in zip(due, outcomes, strict=True):
            if isinstance(outcome, BaseException):  # its lease runs out; it is retried
                log.error("session %s could not be resumed: %r", session.id, outcome)
        return len(due)

    def wake(self) -> None:
        """Look for due sessions now, not at the next poll (answers were recorded here)."""
        self._woken.set()

    async def activate(self, session: Session) -> None:
        started = time.perf_counter()
        journal = await self.replayed(await self.store.journal(session.id))
        context = Context(self, session, journal)
        status, result, error = SessionStatus.COMPLETED, None, None
        try:
            # Changed code is safe while it replays the journal to the same calls; where
            # it does not, `Context._place` refuses it.
            agent = self.agents.find(session.agent)
            arguments = session.arguments
            run = (
                agent.run(context, **arguments)
                if isinstance(arguments, dict)
                else agent.run(context, arguments)
            )
            result = _as_json(await run, f"agent {agent.name}'s result")
        except _Suspend as suspend:
            spent = time.perf_counter() - started
            waiting = suspend.waiting
            if not await self.store.suspend_session(
                session.id, self.owner, waiting, self.clock(), spent
            ):
                # Cancelled (or taken over) meanwhile: what it just queued is not needed
                # here; a runner that took it over finds its calls answered or queues them.
                current = await self.store.get_session(None, session.id)
                if current.status is SessionStatus.CANCELLED:
                    for call in waiting.calls:
                        await self.calls.store.cancel_call(call, self.clock())
            return
        except _Lost:
            log.info("session %s was taken over by another runner", session.id)
            return
        except Exception as exc:  # the agent's own failure ends its session
            status = SessionStatus.FAILED
            error = {"type": type(exc).__name__, "message": str(exc)}
        spent = time.perf_counter() - started
        await self.store.end_session(
            session.id, self.owner, status, self.clock(), spent, result=result, error=error
        )

    async def run(self, stopping: asyncio.Event) -> None:
        """Resume due sessions until `stopping` is set."""
        await run_until(stopping, self._woken, self.poll_seconds, self.run_due, "resuming sessions")
