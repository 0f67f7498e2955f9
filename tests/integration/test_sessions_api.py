"""The sessions API on a running server: a session's inferences run on the server's
workers through the flex tier, it waits for an event, and it is read, forked and
cancelled over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from slackwater.config import PoolConfig
from slackwater.domain.errors import InvalidRequest
from tests.integration.conftest import Server
from tests.integration.test_cascade import models as cascade_models

APP = "tests.integration.agents_app:agents"


async def until(server: Server, session_id: str, done: Callable[[dict[str, Any]], bool]) -> Any:
    for _ in range(500):
        got = (await server.client.get(f"/v1/sessions/{session_id}")).json()
        if done(got):
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"session never got there: {got}")


async def test_a_session_runs_its_inferences_and_waits_for_an_event(
    server_factory: Callable[..., Any],
) -> None:
    server: Server = await server_factory(agents_app=APP, session_poll_seconds=0.02)
    made = await server.client.post(
        "/v1/sessions", json={"agent": "summarise", "arguments": {"texts": ["a", "b"]}}
    )
    assert made.status_code == 200, made.text
    session = made.json()
    assert (session["object"], session["status"]) == ("session", "queued")
    waiting = await until(server, session["id"], lambda s: (s["waiting"] or {}).get("event"))
    assert waiting["status"] == "waiting" and waiting["steps"] == 3  # step, 2 inferences
    metrics = (await server.client.get("/metrics")).text
    assert 'slackwater_sessions{agent="summarise",status="waiting"} 1.0' in metrics
    sent = await server.client.post(
        f"/v1/sessions/{session['id']}/events", json={"key": "go", "payload": {"ok": True}}
    )
    assert sent.status_code == 200, sent.text
    done = await until(server, session["id"], lambda s: s["status"] == "completed")
    assert done["result"] == {"n": 2, "notes": ["echo: a", "echo: b"], "go": {"ok": True}}
    assert 0 < done["active_seconds"] <= done["wall_seconds"]
    metrics = (await server.client.get("/metrics")).text
    assert 'slackwater_sessions{agent="summarise",status="waiting"}' not in metrics
    cost = done["cost"]  # from the ledger: its two inferences
    assert cost["inferences"] == 2 and cost["prompt_tokens"] > 0
    journal = (await server.client.get(f"/v1/sessions/{session['id']}?journal=true")).json()
    assert [e["kind"] for e in journal["journal"]] == ["step", "infer", "infer", "event"]
    # Finished: no more events; a fork past the journal's end is refused.
    late = await server.client.post(
        f"/v1/sessions/{session['id']}/events", json={"key": "go", "payload": 1}
    )
    assert late.status_code == 409 and late.json()["error"]["param"] == "session_id"
    past = await server.client.post(f"/v1/sessions/{session['id']}/fork", json={"upto": 9})
    assert past.status_code == 400 and "4 journal entries" in past.json()["error"]["message"]
    # A fork from after the inferences replays them and waits for its own event.
    fork = (await server.client.post(f"/v1/sessions/{session['id']}/fork", json={"upto": 3})).json()
    assert fork["forked_from"] == session["id"] and fork["steps"] == 3
    await until(server, fork["id"], lambda s: s["status"] == "waiting")
    cancelled = await server.client.post(f"/v1/sessions/{fork['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    listed = (await server.client.get("/v1/sessions")).json()
    assert {s["id"] for s in listed["data"]} == {session["id"], fork["id"]}


async def test_bad_session_input_gets_a_clear_error(server_factory: Callable[..., Any]) -> None:
    server: Server = await server_factory(agents_app=APP)
    unknown = await server.client.post("/v1/sessions", json={"agent": "nope"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["param"] == "agent"
    assert "summarise" in unknown.json()["error"]["message"]
    missing = await server.client.post("/v1/sessions/sess_missing/events", json={"key": "go"})
    assert missing.status_code == 404
    no_key = await server.client.post("/v1/sessions/sess_missing/events", json={"payload": 1})
    assert no_key.status_code == 400 and no_key.json()["error"]["param"] == "key"
    with pytest.raises(InvalidRequest, match="arguments: the value cannot be journalled"):
        await server.services.sessions.start("default", "summarise", {"texts": {1, 2}})


async def test_a_sessions_auto_inference_is_routed_checked_and_escalated(
    server_factory: Callable[..., Any],
) -> None:
    # The cheapest model answers in prose: its answer fails the JSON check and the
    # inference climbs to the next model up before the session sees it.
    # The machine is billed by the hour ($1 a second): the agent's own compute too.
    machine = PoolConfig(name="box", kind="local", price_per_hour=Decimal("3600"))
    server: Server = await server_factory(
        agents_app=APP, session_poll_seconds=0.02, models=cascade_models(), pools=[machine]
    )
    made = await server.client.post(
        "/v1/sessions", json={"agent": "extract", "arguments": {"text": "hello"}}
    )
    done = await until(server, made.json()["id"], lambda s: s["status"] == "completed")
    route = done["result"]["route"]
    assert done["result"]["model"] == "json" and route["ladder"] == ["prose", "json", "best"]
    [attempt] = route["attempts"]
    assert attempt["model"] == "prose" and attempt["failed_check"].startswith("invalid JSON")
    # Its cost: the inference as the ledger charged it, its code's active seconds on the
    # machine, against holding the machine all along and asking in real time.
    cost = done["cost"]
    assert cost["inferences"] == 1 and Decimal(cost["realtime_inference_usd"]) > 0
    assert float(cost["compute_usd"]) == pytest.approx(done["active_seconds"], abs=1e-6)
    assert float(cost["always_on_compute_usd"]) == pytest.approx(done["wall_seconds"], rel=0.05)
    assert cost["saving_ratio"] > 1
