"""Agent sessions on a real store: journalled steps run once, inferences go through the
queue and wake the session when answered, timers and events suspend it, and any runner
resumes it from its journal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from slackwater.domain.batch import Endpoint
from slackwater.domain.model import Catalog, Model
from slackwater.domain.request import Charge, Outcome, Result, Usage
from slackwater.domain.sessions import EntryKind, SessionStatus
from slackwater.domain.tiers import ServiceTier, default_tiers
from slackwater.ports import Settlement
from slackwater.runtime.admission import Admission
from slackwater.runtime.calls import CallQueue
from slackwater.runtime.realtime import Realtime
from slackwater.runtime.routing import AutoRouter
from slackwater.runtime.sessions import FULL_TIER_RETRY_SECONDS, Agents, Context, SessionRunner
from slackwater.store.blobs import LocalBlobStore
from slackwater.store.sql import SqlStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    store = SqlStore(f"sqlite:///{tmp_path / 'sessions.db'}")
    await store.migrate()
    yield store
    await store.close()


CATALOG = Catalog([Model("m", "fake", frozenset({Endpoint.CHAT}))])
CALLS = Realtime(CATALOG, AutoRouter(CATALOG), Admission(CATALOG, {}))
listed: list[str] = []
agents = Agents()


def list_files(repo: str) -> list[str]:
    listed.append(repo)  # the step's outside effect
    return [f"{repo}/a.py", f"{repo}/b.py"]


@agents.agent
async def review(ctx: Context, repo: str) -> dict[str, Any]:
    files = await ctx.step(list_files, repo)
    answers = await ctx.gather(
        *(ctx.infer(model="m", messages=[{"role": "user", "content": f}]) for f in files)
    )
    await ctx.sleep(hours=1)
    approval = await ctx.wait_for("approval")
    return {"notes": [a["choices"][0]["message"]["content"] for a in answers], "ok": approval}


def runner(store: SqlStore, clock: Clock, blobs: Path, found: Agents = agents) -> SessionRunner:
    return SessionRunner(
        store, CallQueue(store, clock), found, default_tiers(), clock, LocalBlobStore(blobs), CALLS
    )


async def answer_calls(store: SqlStore, clock: Clock) -> list[str]:
    """What a worker does: lease the queued calls and record their answers ("looked at"
    and the call's id)."""
    lease = await store.lease("worker", ["m"], 10, clock(), 30)
    assert lease is not None
    results = []
    for request in lease.requests:
        text = f"looked at {request.batch_id}"
        body = {"choices": [{"message": {"role": "assistant", "content": text}}]}
        charge = Charge("local", 0.01, Decimal("0.00001"), Decimal("0.0001"))
        results.append(Result(request.id, Outcome(200, body, Usage(3, 4)), charge))
    await store.record(lease.id, Settlement(results), clock())
    return [r.batch_id for r in lease.requests]


async def test_a_session_sleeps_between_its_steps_and_resumes_from_its_journal(
    store: SqlStore, tmp_path: Path
) -> None:
    listed.clear()
    clock = Clock()
    first = runner(store, clock, tmp_path)
    session = await first.start("p1", "review", {"repo": "src"})
    assert await first.run_due() == 1
    waiting = await store.get_session("p1", session.id)
    assert waiting.status is SessionStatus.WAITING and waiting.steps == 1
    assert listed == ["src"]
    # Nothing is due while the inferences are queued; a worker answers both at once.
    assert await first.run_due() == 0
    calls = await answer_calls(store, clock)
    assert calls == [f"{session.id}.1", f"{session.id}.2"]
    # Another runner (the first one's process is gone) resumes it: the step is not run
    # again, the answers are journalled, and it sleeps for an hour.
    second = runner(store, clock, tmp_path)
    assert await second.run_due() == 1
    assert listed == ["src"]
    slept = await store.get_session("p1", session.id)
    assert slept.status is SessionStatus.WAITING and slept.waiting is not None
    assert slept.waiting.until == clock.now + timedelta(hours=1)
    # The event comes before the session waits for it: it is kept.
    await second.store.send_event("p1", session.id, "approval", {"by": "ann"}, clock())
    clock.now += timedelta(minutes=59)
    assert await second.run_due() == 0
    clock.now += timedelta(minutes=1)
    assert await second.run_due() == 1
    done = await store.get_session("p1", session.id)
    assert done.status is SessionStatus.COMPLETED, done.error
    assert done.result == {
        "notes": [f"looked at {call}" for call in calls],
        "ok": {"by": "ann"},
    }
    kinds = [e.kind for e in await store.journal(session.id)]
    assert kinds == [
        EntryKind.STEP,
        EntryKind.INFER,
        EntryKind.INFER,
        EntryKind.SLEEP,
        EntryKind.EVENT,
    ]
    assert listed == ["src"] and done.active_seconds > 0


async def test_changed_code_that_no_longer_replays_the_journal_is_refused(
    store: SqlStore, tmp_path: Path
) -> None:
    listed.clear()
    clock = Clock()
    first = runner(store, clock, tmp_path)
    session = await first.start("p1", "review", {"repo": "lib"})
    await first.run_due()  # journalled: the step; waiting for the inferences
    changed = Agents()

    @changed.agent(name="review")
    async def other(ctx: Context, repo: str) -> str:
        await ctx.sleep(seconds=1)  # where the journal has the step `list_files`
        return "x"

    await answer_calls(store, clock)
    resumed = runner(store, clock, tmp_path, changed)
    assert await resumed.run_due() == 1
    failed = await store.get_session("p1", session.id)
    assert failed.status is SessionStatus.FAILED and failed.error is not None
    assert "no longer replays its journal: call 0 was step" in failed.error["message"]


big = Agents()
read: list[int] = []


def long_document() -> str:
    read.append(1)
    return "word " * 50_000  # 250 kB: too large for a journal row


@big.agent
async def digest(ctx: Context) -> int:
    text = await ctx.step(long_document)
    await ctx.sleep(seconds=10)
    return len(text)


async def test_large_values_are_kept_in_the_blob_store(store: SqlStore, tmp_path: Path) -> None:
    clock = Clock()
    first = runner(store, clock, tmp_path, big)
    session = await first.start("p1", "digest", {})
    await first.run_due()
    entry, slept = await store.journal(session.id)
    assert entry.value is None and entry.blob is not None and slept.blob is None
    assert (tmp_path / entry.blob).stat().st_size > 250_000
    clock.now += timedelta(seconds=10)
    await runner(store, clock, tmp_path, big).run_due()
    done = await store.get_session("p1", session.id)
    assert (done.status, done.result, read) == (SessionStatus.COMPLETED, 250_000, [1])


tiered = Agents()


@tiered.agent
async def two_tiers(ctx: Context) -> list[str]:
    quick = ctx.infer(model="m", tier="flex", messages=[{"role": "user", "content": "a"}])
    slow = ctx.infer(model="m", tier="batch", messages=[{"role": "user", "content": "b"}])
    answers = await ctx.gather(quick, slow)
    return [a["choices"][0]["message"]["content"] for a in answers]


async def test_a_full_tier_makes_the_session_wait_and_try_again_not_fail(
    store: SqlStore, tmp_path: Path
) -> None:
    clock = Clock()
    tiers = {**default_tiers(), "flex": ServiceTier("flex", 900, max_queued=1)}
    calls = CallQueue(store, clock)
    await calls.put(tiers["flex"], project="p0", model="m", endpoint="/v1/chat/completions",
                    body={}, call_id="someone-else")  # fmt: skip
    first = SessionRunner(store, calls, tiered, tiers, clock, LocalBlobStore(tmp_path), CALLS)
    session = await first.start("p1", "two_tiers", {})
    await first.run_due()
    waiting = await store.get_session("p1", session.id)
    assert waiting.status is SessionStatus.WAITING and waiting.waiting is not None
    assert waiting.waiting.until == clock.now + timedelta(seconds=FULL_TIER_RETRY_SECONDS)
    assert await answer_calls(store, clock) == ["someone-else"]  # the tier has room again
    clock.now += timedelta(seconds=FULL_TIER_RETRY_SECONDS)
    again = SessionRunner(store, CallQueue(store, clock), tiered, tiers, clock,
                          LocalBlobStore(tmp_path), CALLS)  # fmt: skip
    assert await again.run_due() == 1
    assert sorted(await answer_calls(store, clock)) == [f"{session.id}.0", f"{session.id}.1"]
    assert await again.run_due() == 1
    done = await store.get_session("p1", session.id)
    assert done.status is SessionStatus.COMPLETED, done.error
    assert done.result == [f"looked at {session.id}.0", f"looked at {session.id}.1"]
    # Each inference was asked on its own tier.
    by_tier = {row.key: row.requests for row in await store.ledger("tier", project="p1")}
    assert by_tier == {"flex": 1, "batch": 1}
    by_batch = {row.key for row in await store.ledger("batch", project="p1")}
    assert by_batch == {"calls:flex", "calls:batch"}
