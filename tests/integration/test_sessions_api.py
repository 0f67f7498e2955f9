"""The sessions API on a running server: a session's inferences run on the server's
workers through the flex tier, it waits for an event, and it is read, forked and
cancelled over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from slackwater.domain.errors import InvalidRequest
from tests.integration.conftest import Server

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
    sent = await server.client.post(
        f"/v1/sessions/{session['id']}/events", json={"key": "go", "payload": {"ok": True}}
    )
    assert sent.status_code == 200, sent.text
    done = await until(server, session["id"], lambda s: s["status"] == "completed")
    assert done["result"] == {"n": 2, "notes": ["echo: a", "echo: b"], "go": {"ok": True}}
    assert 0 < done["active_seconds"] <= done["wall_seconds"]
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
