"""Sessions: durable multi-step agent runs, and the journal of what each has done.

A session runs its agent's code from the start every time it is resumed; each durable
call (a step, an inference, a sleep, an event) has a place in the journal by the order
it is made in (`seq`). A call whose place holds an entry returns what the entry says,
without doing it again; the first call past the journal's end does its work (a step
runs, an inference is queued, a sleep or a wait suspends the session) and is journalled.
So a suspended session is a row and its journal, not a process: any worker can resume
it, after any crash, from its last journalled call.

    queued ──► running ──► waiting ──► queued ──► … ──► completed | failed
       (a worker takes it)   (it waits: a sleep, an event, inferences)
    any state but an end ──► cancelled
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from slackwater.domain.money import NANO


def call_id(session_id: str, seq: int) -> str:
    """The id of the queued call a session's inference at place `seq` is: derived, so a
    resumed session finds the call instead of queueing it again, and the ledger can
    group calls by session."""
    return f"{session_id}.{seq}"


class SessionStatus(enum.StrEnum):
    QUEUED = "queued"  # ready to run: new, or woken
    RUNNING = "running"  # a worker holds it (leased until `lease_expires_at`)
    WAITING = "waiting"  # suspended: holds no compute until what it waits for comes
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in (SessionStatus.COMPLETED, SessionStatus.FAILED, SessionStatus.CANCELLED)


class EntryKind(enum.StrEnum):
    STEP = "step"  # a function's result
    INFER = "infer"  # an inference: the call queued (then its answer, by call id)
    SLEEP = "sleep"  # a timer: when it ends
    EVENT = "event"  # an event taken: its payload


@dataclass(frozen=True)
class Entry:
    """One journalled call: `value` is what the call returns on replay (JSON), or, for
    large values, None with `blob` naming where it is kept."""

    seq: int
    kind: EntryKind
    name: str  # the step's function, the inference's model, the event's key
    value: Any = None
    blob: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class Waiting:
    """What a suspended session waits for: it is woken when the timer ends, when the
    event comes, or when all the calls have finished, whichever is given first."""

    until: datetime | None = None
    event: str | None = None
    calls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.until is None and self.event is None and not self.calls:
            raise ValueError("a session waits for a time, an event or calls")


@dataclass(frozen=True)
class Session:
    id: str
    project: str
    agent: str
    version: str  # a fingerprint of the agent's code: resuming under another is refused
    arguments: Any  # JSON
    status: SessionStatus
    created_at: datetime
    updated_at: datetime
    steps: int = 0  # journal entries so far
    waiting: Waiting | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    owner: str | None = None
    lease_expires_at: datetime | None = None
    active_seconds: float = 0.0  # time a worker spent running it, all told
    finished_at: datetime | None = None
    forked_from: str | None = None  # the session whose journal it started from
    forked_at: int | None = None  # how many of that journal's entries it took


HOUR = Decimal(3600)


@dataclass(frozen=True)
class SessionCost:
    """A session's cost so far: its inferences as the ledger charged them and its code's
    active seconds on its machine, against what the same run costs held on always-on
    compute for its whole wall-clock time with realtime inference."""

    inferences: int
    prompt_tokens: int
    completion_tokens: int
    inference_cost: Decimal  # as the ledger charged them
    realtime_cost: Decimal  # the same tokens at the models' realtime prices
    active_seconds: float
    wall_seconds: float
    price_per_hour: Decimal  # the machine its code runs on

    def _machine(self, seconds: float) -> Decimal:
        return (self.price_per_hour * Decimal(repr(seconds)) / HOUR).quantize(NANO)

    @property
    def total(self) -> Decimal:
        return self.inference_cost + self._machine(self.active_seconds)

    @property
    def always_on_realtime(self) -> Decimal:
        return self.realtime_cost + self._machine(self.wall_seconds)

    def to_dict(self) -> dict[str, Any]:
        total, reference = self.total, self.always_on_realtime
        return {
            "inferences": self.inferences,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "inference_usd": str(self.inference_cost),
            "compute_usd": str(self._machine(self.active_seconds)),
            "total_usd": str(total),
            "realtime_inference_usd": str(self.realtime_cost),
            "always_on_compute_usd": str(self._machine(self.wall_seconds)),
            "always_on_realtime_usd": str(reference),
            "saving_ratio": round(float(reference / total), 2) if total else None,
        }
