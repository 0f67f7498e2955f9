"""Agent sessions through SIGKILLs: 20 sessions of a 30-call agent (steps with outside
effects, inferences on a local model through the flex and batch tiers, a sleep, an
event), with the server, the model worker and two agents workers killed at random
moments and restarted. Every session ends as an undisturbed run of it does, each step's
effect happened once, each inference is in the ledger once.

Bounded: a fixed number of kills, a seeded random generator, time limits.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from slackwater.store.schema import requests
from slackwater.store.sql import SqlStore
from tests.acceptance import session_agents
from tests.acceptance.conftest import Process, start, start_server
from tests.conftest import free_port

pytestmark = pytest.mark.slow
SESSIONS = 20
KILLS = 8
ACTIVATIONS = 16  # sessions a runner resumes side by side (SessionRunner.run_due)

CONFIG = """
lease_size = 8
lease_seconds = 2
poll_seconds = 0.05
session_lease_seconds = 3
session_poll_seconds = 0.2
agents_app = "tests.acceptance.session_agents:agents"

[[models]]
name = "tiny"
engine = "transformers"
endpoints = ["/v1/chat/completions"]
context_window = 512
max_batch_size = 8
options = {{ path = "{tiny}" }}
"""


class Stack:
    """A data directory and the processes over it, as a user would run them."""

    def __init__(self, root: Path, tiny: Path, processes: list[Process]) -> None:
        self.root, self.processes = root, processes
        self.data = root / "data"
        self.effects = root / "effects"
        self.effects.mkdir(parents=True)
        self.config = root / "slackwater.toml"
        self.config.write_text(CONFIG.format(tiny=tiny))
        self.env = {"SESSION_EFFECTS": str(self.effects)}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def serve(self, *extra: str) -> Process:
        proc = start_server(
            self.data, "--config", str(self.config), *extra, env=self.env, port=self.port
        )
        self.processes.append(proc)
        return proc

    def run(self, *command: str, name: str) -> Process:
        args = [*command, "--config", str(self.config), "--data-dir", str(self.data)]
        proc = start(args, self.root / f"{name}.log", self.env)
        self.processes.append(proc)
        return proc

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """An API call, tried again while the server restarts."""
        limit = time.monotonic() + 120
        while True:
            try:
                answer = httpx.request(method, self.url + path, timeout=10, **kwargs)
                if answer.status_code < 500:
                    answer.raise_for_status()
                    return answer.json()
            except httpx.TransportError:
                pass
            assert time.monotonic() < limit, f"{method} {path} did not get through"
            time.sleep(0.2)

    def sessions(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/sessions?limit=100")["data"])

    def start_all(self) -> list[str]:
        return [
            self.call("POST", "/sessions", json={"agent": "enrich", "arguments": {"n": n}})["id"]
            for n in range(SESSIONS)
        ]

    def send_go(self, session_id: str) -> None:
        self.call("POST", f"/sessions/{session_id}/events", json={"key": "go", "payload": "ok"})

    def wait_done(self, during: Callable[[], None] = lambda: None) -> list[dict[str, Any]]:
        limit = time.monotonic() + 300
        while True:
            during()
            listed = self.sessions()
            if all(s["status"] in {"completed", "failed", "cancelled"} for s in listed):
                return listed
            assert time.monotonic() < limit, [(s["id"], s["status"]) for s in listed]
            time.sleep(0.5)

    def ledger(self) -> list[Any]:
        async def read() -> list[Any]:
            store = SqlStore(f"sqlite:///{self.data / 'slackwater.db'}")
            try:
                async with store.engine.begin() as conn:
                    query = select(
                        requests.c.batch_id,
                        requests.c.status,
                        requests.c.tier,
                        requests.c.cost_nano,
                    ).where(requests.c.batch_id.like("sess\\_%", escape="\\"))
                    return list((await conn.execute(query)).all())
            finally:
                await store.close()

        return asyncio.run(read())


def results(listed: list[dict[str, Any]]) -> dict[int, Any]:
    return {s["arguments"]["n"]: s["result"] for s in listed}


def test_sessions_survive_sigkills_of_every_process(
    tmp_path: Path, tiny_llama: Path, processes: list[Process]
) -> None:
    # The undisturbed run: one server that runs the model and the sessions.
    calm = Stack(tmp_path / "calm", tiny_llama, processes)
    calm.serve()
    for session_id in calm.start_all():
        calm.send_go(session_id)
    undisturbed = results(calm.wait_done())
    assert all(r is not None and r["approval"] == "ok" for r in undisturbed.values())
    assert len({str(r["notes"]) for r in undisturbed.values()}) == SESSIONS  # real answers

    # The same sessions with kills: the server (it runs sessions too), the model worker
    # and two agents workers, each restarted after its kill.
    rng = random.Random(20261129)
    chaos = Stack(tmp_path / "chaos", tiny_llama, processes)
    server = chaos.serve("--workers", "0")
    workers = [chaos.run("worker", name="worker-0")]
    agents = [chaos.run("agents", "worker", name=f"agents-{i}") for i in range(2)]
    ids = chaos.start_all()
    for session_id in ids[: SESSIONS // 2]:  # before they wait for it: kept for them
        chaos.send_go(session_id)
    kills: list[tuple[str, int]] = []  # (victim, sessions ended when it was killed)
    runner_kills = 0
    for kill in range(KILLS):
        time.sleep(rng.uniform(0.5, 2.5))
        ended = sum(s["status"] == "completed" for s in chaos.sessions())
        victim = ["server", "worker", "agents"][kill % 3 if kill < 3 else rng.randrange(3)]
        if victim == "server":
            server.stop(signal.SIGKILL)
            server = chaos.serve("--workers", "0")
            runner_kills += 1
        elif victim == "worker":
            workers[0].stop(signal.SIGKILL)
            workers[0] = chaos.run("worker", name=f"worker-{kill + 1}")
        else:
            which = rng.randrange(2)
            agents[which].stop(signal.SIGKILL)
            agents[which] = chaos.run("agents", "worker", name=f"agents-{kill + 10}")
            runner_kills += 1
        kills.append((victim, ended))
        if kill == KILLS // 2:
            for session_id in ids[SESSIONS // 2 :]:
                chaos.send_go(session_id)
    assert kills[0][1] < SESSIONS, "the kills came after the sessions had ended"
    disturbed = results(chaos.wait_done())
    assert disturbed == undisturbed

    # Each step's effect happened once (by its key); a step ran twice only where a kill
    # cut it between its effect and its journal entry.
    effects = sorted(p.name for p in chaos.effects.iterdir() if p.name != "runs.log")
    expected = sorted(f"{sid}-{seq}" for sid in ids for seq in session_agents.EFFECTS)
    assert effects == expected
    runs = Counter((chaos.effects / "runs.log").read_text().split())
    assert set(runs) == {name.replace("-", ":") for name in expected}
    repeated = sum(runs.values()) - len(runs)
    assert repeated <= runner_kills * ACTIVATIONS, runs.most_common(5)

    # Each inference is in the ledger once, answered and charged, on the tier it asked.
    ledger = chaos.ledger()
    assert Counter(row.batch_id for row in ledger).most_common(1)[0][1] == 1
    assert len(ledger) == SESSIONS * (len(session_agents.FLEX) + len(session_agents.BATCH))
    assert all(row.status == "succeeded" and row.cost_nano is not None for row in ledger)
    by_tier = Counter(row.tier for row in ledger)
    assert by_tier == {"flex": SESSIONS * 3, "batch": SESSIONS * 3}
