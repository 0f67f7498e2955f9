"""The Responses API and service tiers, in process over ASGI (fake-engine models)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Server, chat_line


async def create(
    server: Server, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    return await server.client.post(
        "/v1/responses", json={"model": "echo", **body}, headers=headers
    )


async def settled(server: Server, response_id: str, limit: float = 10) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        answer: dict[str, Any] = (await server.client.get(f"/v1/responses/{response_id}")).json()
        if answer["status"] not in ("queued", "in_progress"):
            return answer
        assert asyncio.get_running_loop().time() < deadline, answer
        await asyncio.sleep(0.02)


async def test_a_response_in_the_call(server: Server) -> None:
    made = await create(
        server,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hello there"}]}],
        instructions="be brief",
        metadata={"job": "greet"},
        max_output_tokens=16,
    )
    assert made.status_code == 200, made.text
    answer = made.json()
    assert answer["object"] == "response" and answer["id"].startswith("resp_")
    assert answer["status"] == "completed" and answer["service_tier"] == "default"
    [message] = answer["output"]
    assert message["content"][0] == {
        "type": "output_text",
        "text": "echo: hello there",
        "annotations": [],
    }
    assert answer["usage"]["input_tokens"] == 2 and answer["usage"]["total_tokens"] == 5
    assert answer["metadata"] == {"job": "greet"} and answer["instructions"] == "be brief"
    # Stored: it can be read back, and continued.
    assert (await server.client.get(f"/v1/responses/{answer['id']}")).json() == answer
    more = await create(server, input="and again", previous_response_id=answer["id"])
    assert more.json()["previous_response_id"] == answer["id"]
    stored = await server.services.store.get_response("default", more.json()["id"])
    assert [item["role"] for item in stored.request["input"]] == ["user", "assistant", "user"]
    assert stored.request["input"][1]["content"] == "echo: hello there"
    short = (await create(server, input="one two three four", max_output_tokens=16)).json()
    assert short["status"] == "completed"
    cut = (await create(server, input=" ".join(["w"] * 30), max_output_tokens=16)).json()
    assert cut["status"] == "incomplete"
    assert cut["incomplete_details"] == {"reason": "max_output_tokens"}
    unstored = (await create(server, input="hi", store=False)).json()
    assert (await server.client.get(f"/v1/responses/{unstored['id']}")).status_code == 404


async def test_background_responses_run_from_the_queue(server: Server) -> None:
    made = await create(server, input="later please", background=True, metadata={"k": "v"})
    assert made.status_code == 200
    queued = made.json()
    assert queued["status"] == "queued" and queued["background"] is True
    assert queued["output"] == [] and queued["usage"] is None
    done = await settled(server, queued["id"])
    assert done["status"] == "completed" and done["id"] == queued["id"]
    assert done["created_at"] == queued["created_at"] and done["metadata"] == {"k": "v"}
    assert done["output"][0]["content"][0]["text"] == "echo: later please"
    assert done["output"][0]["id"] == "msg_" + queued["id"].removeprefix("resp_")
    # The ledger has it, under its tier.
    tiers = {row.key: row for row in await server.services.store.ledger("tier")}
    assert tiers["default"].requests == 1
    deleted = await server.client.delete(f"/v1/responses/{queued['id']}")
    assert deleted.json() == {"id": queued["id"], "object": "response", "deleted": True}
    assert (await server.client.get(f"/v1/responses/{queued['id']}")).status_code == 404


async def test_cancel_a_queued_background_response(server_factory: Callable[..., Any]) -> None:
    server: Server = await server_factory(workers=0)  # nothing runs: it stays queued
    queued = (await create(server, input="never mind", background=True)).json()
    assert (await server.client.get(f"/v1/responses/{queued['id']}")).json()["status"] == "queued"
    cancelled = await server.client.post(f"/v1/responses/{queued['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = await server.client.post(f"/v1/responses/{queued['id']}/cancel")
    assert again.json()["status"] == "cancelled"
    sync = (await create(server, input="now")).json()
    refused = await server.client.post(f"/v1/responses/{sync['id']}/cancel")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "response_id"
    # Continuing a response that has not completed is refused, naming the field.
    waiting = (await create(server, input="x", background=True)).json()
    early = await create(server, input="y", previous_response_id=waiting["id"])
    assert early.status_code == 400
    assert early.json()["error"]["param"] == "previous_response_id"


async def test_flex_waits_in_the_queue_and_answers_in_the_call(server: Server) -> None:
    flex = await create(server, input="whenever", service_tier="flex")
    assert flex.status_code == 200, flex.text
    assert flex.json()["status"] == "completed" and flex.json()["service_tier"] == "flex"
    chat = await server.client.post(
        "/v1/chat/completions",
        json={
            "model": "echo",
            "messages": [{"role": "user", "content": "hi"}],
            "service_tier": "standard",
        },
    )
    assert chat.status_code == 200 and chat.json()["service_tier"] == "standard"
    assert chat.json()["choices"][0]["message"]["content"] == "echo: hi"
    now = await server.client.post(
        "/v1/embeddings", json={"model": "vec", "input": "x", "service_tier": "priority"}
    )
    assert now.json()["service_tier"] == "priority"
    plain = await server.client.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "x"}]},
    )
    assert plain.json()["service_tier"] == "default"
    auto = (await create(server, input="x", service_tier="auto")).json()
    assert auto["service_tier"] == "default"
    # Queued calls are in the ledger as they are recorded; calls answered in real time
    # as they are written in the background.
    await server.services.call_ledger.flush()
    tiers = {row.key: row.requests for row in await server.services.store.ledger("tier")}
    assert tiers == {"flex": 1, "standard": 1, "priority": 1, "default": 2}


async def test_a_full_tier_says_429(server_factory: Callable[..., Any]) -> None:
    server: Server = await server_factory(
        workers=0, service_tiers={"slow": {"window_seconds": 60, "max_queued": 1}}
    )
    first = await create(server, input="a", background=True, service_tier="slow")
    assert first.status_code == 200
    second = await create(server, input="b", background=True, service_tier="slow")
    assert second.status_code == 429 and second.json()["error"]["code"] == "tier_full"


async def test_bad_input_gets_a_clear_error(server: Server) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"input": "x", "service_tier": "gold"}, 400, "service_tier"),
        ({"input": "x", "background": True, "store": False}, 400, "store"),
        ({"input": [{"type": "input_image", "image_url": "http://x"}]}, 400, "input[0]"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            400,
            "input[0].content[0]",
        ),
        ({"input": "x", "tools": [{"type": "web_search"}]}, 400, "tools"),
        ({"input": "x", "max_output_tokens": 0}, 400, "max_output_tokens"),
        ({"input": "x", "text": {"format": {"type": "yaml"}}}, 400, "text.format.type"),
        ({"input": 7}, 400, "input"),
        ({"input": "x", "model": "nope"}, 404, "model"),
        ({"input": "x", "previous_response_id": "resp_nothing"}, 404, "previous_response_id"),
    ]
    for body, status, param in cases:
        answer = await create(server, **body)
        assert answer.status_code == status, (body, answer.text)
        error = answer.json()["error"]
        assert error["param"] == param and error["message"], (body, error)


async def test_responses_of_another_project_are_not_found(server: Server) -> None:
    key_a, _ = await server.services.keys.create("team-a")
    key_b, _ = await server.services.keys.create("team-b")
    a = {"Authorization": f"Bearer {key_a}"}
    b = {"Authorization": f"Bearer {key_b}"}
    mine = (await create(server, headers=a, input="secret")).json()
    theirs = await create(server, headers=b, input="x", previous_response_id=mine["id"])
    assert theirs.status_code == 404 and theirs.json()["error"]["type"] == "invalid_request_error"
    for method, path in (
        ("GET", f"/v1/responses/{mine['id']}"),
        ("POST", f"/v1/responses/{mine['id']}/cancel"),
        ("DELETE", f"/v1/responses/{mine['id']}"),
    ):
        assert (await server.client.request(method, path, headers=b)).status_code == 404
    assert (await server.client.get(f"/v1/responses/{mine['id']}", headers=a)).status_code == 200


async def test_responses_lines_in_a_batch(server: Server) -> None:
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/responses",
            "body": {"model": "echo", "input": f"line {i}", "max_output_tokens": 16},
        }
        for i in range(3)
    ]
    batch = await server.submit(lines, endpoint="/v1/responses")
    done = await server.wait(batch["id"])
    assert done["status"] == "completed", done
    out = await server.lines(done["output_file_id"])
    assert [o["response"]["body"]["output"][0]["content"][0]["text"] for o in out] == [
        f"echo: line {i}" for i in range(3)
    ]
    assert all(o["response"]["body"]["object"] == "response" for o in out)
    bad = [{**lines[0], "body": {**lines[0]["body"], "previous_response_id": "resp_x"}}]
    refused = await server.wait((await server.submit(bad, endpoint="/v1/responses"))["id"])
    assert refused["status"] == "failed"
    [error] = refused["errors"]["data"]
    assert error["param"] == "body.previous_response_id" and error["line"] == 1


async def flex_calls(server: Server, names: list[str], gap: float = 0.0) -> None:
    async def one(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        answer = await server.client.post(
            "/v1/chat/completions",
            json={
                "model": "echo",
                "messages": [{"role": "user", "content": name}],
                "user": name,
                "service_tier": "flex",
            },
        )
        assert answer.status_code == 200, answer.text

    await asyncio.gather(*(one(name, i * gap) for i, name in enumerate(names)))


def engine_calls(log: Path, names: list[str]) -> int:
    """How many engine calls ran the named requests."""
    starts = {}
    for line in log.read_text().splitlines():
        name, started = line.split()
        starts[name] = started
    return len({starts[name] for name in names})


@pytest.mark.parametrize(("wait", "calls"), [(0.5, 1), (0.0, 2)])
async def test_flex_calls_that_trickle_in_share_an_engine_batch(
    server_factory: Callable[..., Any], tmp_path: Path, wait: float, calls: int
) -> None:
    log = tmp_path / "calls.log"
    server: Server = await server_factory(
        engine_options={"latency_ms": 600, "item_latency_ms": 5, "call_log": str(log)},
        max_batch_wait_seconds=wait,
    )
    # The worker learns the engine's step time from the steps it runs.
    await flex_calls(server, ["w0"])
    await flex_calls(server, ["w1", "w2", "w3"])
    # Four calls 30 ms apart: with micro-batching they wait for each other (the step's
    # fixed 600 ms is worth sharing); without, the first runs alone.
    trickled = ["t0", "t1", "t2", "t3"]
    await flex_calls(server, trickled, gap=0.03)
    assert engine_calls(log, trickled) == calls


async def test_a_flex_call_does_not_wait_for_a_long_batch_lease(
    server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    server: Server = await server_factory(
        engine_options={"latency_ms": 150, "call_log": str(log)}, lease_size=256
    )
    # 20 engine steps of 4, two at a time: results are first written after 0.5 s.
    lines = [chat_line(i, user=f"b{i}") for i in range(80)]
    batch = await server.submit(lines)
    await server.wait(batch["id"], until=lambda b: b["request_counts"]["completed"] >= 4)
    await flex_calls(server, ["flex"])
    await server.wait(batch["id"])
    starts = dict(line.split() for line in log.read_text().splitlines())
    # The worker leased all 80 lines at once; the flex call, due in 15 minutes, went
    # ahead of the rest of them (due tomorrow) at the next step, not after all 80.
    after = [name for name, started in starts.items() if started > starts["flex"]]
    assert len(after) >= 8, sorted(starts.items(), key=lambda item: item[1])


async def test_the_last_part_full_step_of_a_lease_takes_in_what_came_since(
    server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    server: Server = await server_factory(
        engine_options={"latency_ms": 1500, "call_log": str(log)},
        lease_size=256,
        max_batch_wait_seconds=0,
    )
    first = await server.submit([chat_line(i, user=f"a{i}") for i in range(9)])  # 4, 4, 1
    # The first two steps run side by side (1.5 s); more lines come while they run.
    await server.wait(first["id"], until=lambda b: b["status"] == "in_progress")
    statuses = server.services.store.request_statuses
    for _ in range(500):
        if (await statuses(first["id"])).get("leased", 0) == 9:
            break
        await asyncio.sleep(0.01)
    later = await server.submit([chat_line(i, user=f"b{i}") for i in range(3)])
    await server.wait(later["id"], until=lambda b: b["status"] != "validating")
    await server.wait(first["id"])
    await server.wait(later["id"])
    # The first lease's last line did not take an engine step alone: the worker gave it
    # back and leased it again with the three lines that came meanwhile.
    assert engine_calls(log, ["a8", "b0", "b1", "b2"]) == 1, log.read_text()
