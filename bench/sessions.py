"""Sessions that wait hold nothing: 10,000 suspended on inference, side by side with the
same 10,000 as live asyncio tasks, and how fast a recorded answer resumes a session.

In one process, on SQLite (a temp directory), with the real store, queue and runner:
  1. `--sessions` sessions of an agent that asks one inference (flex) and then runs a
     step: all suspend. Resident memory the process keeps for them, and its CPU while
     they wait (the runner polling for due sessions).
  2. The same number of live asyncio tasks, each holding the same prompt and awaiting
     a future (what an agent framework without a journal holds): memory and CPU.
  3. Resume latency: `--resume` of the inferences are answered (leased and recorded as
     a worker does); from each record to the session's next step: p50 / p95.
  4. One session whose agent sleeps between two inferences: active compute seconds vs
     wall-clock seconds, and what always-on compute would cost against it.

    python bench/sessions.py [--sessions 10000] [--resume 500] [--json]
Targets: suspended sessions < 200 MB, ~0% CPU, no process per session; resume p95 < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slackwater.domain.batch import Endpoint
from slackwater.domain.model import Catalog, Model
from slackwater.domain.request import Outcome, Result, Usage
from slackwater.domain.sessions import SessionStatus
from slackwater.domain.tiers import default_tiers
from slackwater.ports import Settlement
from slackwater.runtime.admission import Admission
from slackwater.runtime.calls import CallQueue
from slackwater.runtime.realtime import Realtime
from slackwater.runtime.routing import AutoRouter
from slackwater.runtime.sessions import Agents, Context, SessionRunner
from slackwater.store.blobs import LocalBlobStore
from slackwater.store.sql import SqlStore

CATALOG = Catalog([Model("m", "fake", frozenset({Endpoint.CHAT}))])
CALLS = Realtime(CATALOG, AutoRouter(CATALOG), Admission(CATALOG, {}))
PROMPT = "Review this function for bugs and say what you would change. " * 20
resumed_at: dict[str, float] = {}
agents = Agents()


def mark(session_id: str) -> bool:
    resumed_at[session_id] = time.perf_counter()
    return True


@agents.agent
async def review(ctx: Context, n: int) -> str:
    answer = await ctx.infer(model="m", messages=[{"role": "user", "content": f"{n} {PROMPT}"}])
    await ctx.step(mark, ctx.session_id)
    return str(answer["choices"][0]["message"]["content"])[:20]


@agents.agent
async def research(ctx: Context) -> int:
    first = await ctx.infer(model="m", messages=[{"role": "user", "content": "plan"}])
    await ctx.sleep(seconds=2)
    second = await ctx.infer(model="m", messages=[{"role": "user", "content": "write"}])
    return len(str(first)) + len(str(second))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def cpu_share(seconds: float) -> float:
    """The share of one core this process used over `seconds` of waiting."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    await asyncio.sleep(seconds)
    return (cpu_seconds() - cpu) / (time.perf_counter() - wall)


def clock() -> datetime:
    return datetime.now(UTC)


async def answer(store: SqlStore, limit: int) -> list[tuple[str, float]]:
    """Lease and record up to `limit` queued calls, as a worker does: (call, when)."""
    lease = await store.lease("bench-worker", ["m"], limit, clock(), 60)
    if lease is None:
        return []
    body = {"choices": [{"message": {"role": "assistant", "content": "looks fine"}}]}
    results = [Result(r.id, Outcome(200, body, Usage(120, 8))) for r in lease.requests]
    await store.record(lease.id, Settlement(results), clock())
    recorded = time.perf_counter()
    return [(r.batch_id, recorded) for r in lease.requests]


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    store = SqlStore(f"sqlite:///{work / 'bench.db'}")
    await store.migrate()
    calls = CallQueue(store, clock)
    blobs = LocalBlobStore(work / "files")
    runner = SessionRunner(store, calls, agents, default_tiers(), clock, blobs, CALLS)
    gc.collect()
    base = rss_mb()

    started = time.perf_counter()
    ids = [(await runner.start("bench", "review", {"n": i})).id for i in range(args.sessions)]
    while await runner.run_due(limit=256):
        pass
    setup_seconds = time.perf_counter() - started
    waiting = await store.get_session(None, ids[-1])
    assert waiting.status is SessionStatus.WAITING, waiting
    gc.collect()
    suspended_mb = rss_mb() - base
    stopping = asyncio.Event()
    polling = asyncio.create_task(runner.run(stopping))
    suspended_cpu = await cpu_share(args.idle_seconds)

    # The same work as live tasks: each holds its prompt and waits on a future.
    gc.collect()
    before = rss_mb()
    futures: list[asyncio.Future[str]] = [
        asyncio.get_running_loop().create_future() for _ in range(args.sessions)
    ]

    async def live(n: int, future: asyncio.Future[str]) -> str:
        messages = [{"role": "user", "content": f"{n} {PROMPT}"}]
        answer = await future
        return answer + str(len(messages))

    tasks = [asyncio.create_task(live(n, f)) for n, f in enumerate(futures)]
    await asyncio.sleep(0.1)
    gc.collect()
    live_mb = rss_mb() - before
    live_cpu = await cpu_share(args.idle_seconds)
    for future in futures:
        future.set_result("done")
    await asyncio.gather(*tasks)

    # Resume latency: answers recorded ten at a time, five times a second, as a worker in
    # the same process records them (it wakes the runner; another process's would be
    # seen at the runner's next poll, 0.2 s).
    recorded: dict[str, float] = {}
    while len(recorded) < args.resume:
        got = await answer(store, min(10, args.resume - len(recorded)))
        if not got:
            break
        runner.wake()
        recorded.update((call.rsplit(".", 1)[0], when) for call, when in got)
        await asyncio.sleep(0.2)
    for _ in range(1200):  # a minute at most
        if all(s in resumed_at for s in recorded):
            break
        await asyncio.sleep(0.05)
    latencies = sorted(resumed_at[s] - recorded[s] for s in recorded if s in resumed_at)

    stopping.set()
    await polling
    await calls.close()
    await store.close()

    # One research session, on a store of its own (not behind the 10,000 in the queue):
    # active compute against wall-clock time.
    store = SqlStore(f"sqlite:///{work / 'research.db'}")
    await store.migrate()
    calls = CallQueue(store, clock)
    runner = SessionRunner(store, calls, agents, default_tiers(), clock, blobs, CALLS)
    stopping = asyncio.Event()
    polling = asyncio.create_task(runner.run(stopping))
    session = await runner.start("bench", "research", {})
    wall = time.perf_counter()
    for _ in range(400):
        if await answer(store, 100):
            runner.wake()
        current = await store.get_session(None, session.id)
        if current.status.ended:
            break
        await asyncio.sleep(0.05)
    wall_seconds = time.perf_counter() - wall
    stopping.set()
    await polling
    await calls.close()
    await store.close()
    return {
        "sessions": args.sessions,
        "setup_seconds": setup_seconds,
        "suspended_mb": suspended_mb,
        "suspended_cpu": suspended_cpu,
        "live_mb": live_mb,
        "live_cpu": live_cpu,
        "resumed": len(latencies),
        "resume_p50": latencies[len(latencies) // 2] if latencies else None,
        "resume_p95": latencies[int(len(latencies) * 0.95)] if latencies else None,
        "research_status": current.status.value,
        "research_active_seconds": current.active_seconds,
        "research_wall_seconds": wall_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--resume", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        result = asyncio.run(measure(args, Path(work)))
    if args.json:
        print(json.dumps(result))
        return
    n = result["sessions"]
    print(f"{n} sessions suspended on inference (set up in {result['setup_seconds']:.1f} s)")
    print(f"{'':34}{'memory MB':>12}{'CPU (share of a core)':>24}")
    print(f"{'suspended sessions (rows)':34}{result['suspended_mb']:>12.1f}"
          f"{result['suspended_cpu']:>24.3f}")  # fmt: skip
    print(f"{'live asyncio tasks':34}{result['live_mb']:>12.1f}{result['live_cpu']:>24.3f}")
    print("processes per session: 0 (a waiting session is a row and its journal)")
    if result["resume_p50"] is not None:
        print(
            f"resume, answer recorded -> next step ({result['resumed']} sessions): "
            f"p50 {result['resume_p50']:.3f} s, p95 {result['resume_p95']:.3f} s"
        )
    active, wall = result["research_active_seconds"], result["research_wall_seconds"]
    print(
        f"one research session ({result['research_status']}): active {active:.3f} s of "
        f"{wall:.2f} s wall; always-on compute would cost {wall / max(active, 1e-9):.0f}x"
    )
    print("targets: suspended < 200 MB, ~0% CPU, no process per session; resume p95 < 1 s")


if __name__ == "__main__":
    main()
