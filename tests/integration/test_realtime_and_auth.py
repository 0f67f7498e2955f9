"""Realtime endpoints on the same engines, and API keys with per-project isolation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.integration.conftest import Server, chat_line


async def test_realtime_endpoints(server: Server) -> None:
    chat = await server.client.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "ping"}]},
    )
    assert chat.status_code == 200
    assert chat.json()["choices"][0]["message"]["content"] == "echo: ping"
    emb = await server.client.post("/v1/embeddings", json={"model": "vec", "input": "x"})
    assert len(emb.json()["data"][0]["embedding"]) == 16
    completion = await server.client.post(
        "/v1/completions", json={"model": "echo", "prompt": "a b"}
    )
    assert completion.json()["choices"][0]["text"] == "echo: a b"
    unknown = await server.client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
    wrong = await server.client.post("/v1/embeddings", json={"model": "echo", "input": "x"})
    assert wrong.status_code == 400
    bad = await server.client.post("/v1/chat/completions", json={"model": "echo", "messages": 3})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"
    models = (await server.client.get("/v1/models")).json()
    assert [m["id"] for m in models["data"]] == ["echo", "vec"]


async def test_keys_isolate_projects(server: Server, tmp_path: Path) -> None:
    key_a, _ = await server.services.keys.create("team-a")
    key_b, _ = await server.services.keys.create("team-b")
    a = {"Authorization": f"Bearer {key_a}"}
    b = {"Authorization": f"Bearer {key_b}"}
    missing = await server.client.get("/v1/batches")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    wrong = await server.client.get("/v1/batches", headers={"Authorization": "Bearer sk-x"})
    assert wrong.status_code == 401
    batch = await server.submit([chat_line(0)], headers=a)
    done = await server.wait(batch["id"], headers=a)
    assert done["status"] == "completed"
    assert (await server.client.get(f"/v1/batches/{batch['id']}", headers=b)).status_code == 404
    assert (await server.client.get("/v1/batches", headers=b)).json()["data"] == []
    output = done["output_file_id"]
    assert (await server.client.get(f"/v1/files/{output}/content", headers=b)).status_code == 404
    assert (await server.client.get(f"/v1/files/{output}/content", headers=a)).status_code == 200
    assert (
        await server.client.delete(f"/v1/files/{batch['input_file_id']}", headers=b)
    ).status_code == 404
    assert (
        await server.client.post(f"/v1/batches/{batch['id']}/cancel", headers=b)
    ).status_code == 404


async def test_revoked_expired_and_scoped_keys(server: Server) -> None:
    keys = server.services.keys
    full, full_key = await keys.create("team-a", name="ci")
    reader, _ = await keys.create("team-a", scope="read")
    batcher, _ = await keys.create("team-a", scope="batch")
    brief, _ = await keys.create("team-a", expires_in="1h")

    def auth(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    batch = await server.submit([chat_line(0)], headers=auth(full))
    assert (await server.client.get("/v1/batches", headers=auth(reader))).status_code == 200
    refused = await server.client.post(f"/v1/batches/{batch['id']}/cancel", headers=auth(reader))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"
    assert "read" in refused.json()["error"]["message"]
    assert (await server.client.get("/v1/files", headers=auth(batcher))).status_code == 200
    realtime = await server.client.post("/v1/chat/completions", json=chat, headers=auth(batcher))
    assert realtime.status_code == 403
    ok = await server.client.post("/v1/chat/completions", json=chat, headers=auth(full))
    assert ok.status_code == 200

    assert (await server.client.get("/v1/files", headers=auth(brief))).status_code == 200
    server.clock.offset = timedelta(hours=2)  # past the hour
    assert (await server.client.get("/v1/files", headers=auth(brief))).status_code == 401
    server.clock.offset = timedelta()

    await keys.revoke(full_key.id)  # effective on the very next call
    assert (await server.client.get("/v1/files", headers=auth(full))).status_code == 401
    listed = {k.id: k for k in await keys.list("team-a")}
    assert listed[full_key.id].revoked_at is not None and listed[full_key.id].name == "ci"
    assert len(listed) == 4


async def test_metrics_and_api_description_need_a_key_once_keys_exist(
    server_factory: Any,
) -> None:
    closed = await server_factory()
    assert (await closed.client.get("/openapi.json")).status_code == 200  # no keys yet
    secret, _ = await closed.services.keys.create("team-a", scope="read")
    for path in ("/metrics", "/openapi.json", "/docs"):
        assert (await closed.client.get(path)).status_code == 401, path
        allowed = await closed.client.get(path, headers={"Authorization": f"Bearer {secret}"})
        assert allowed.status_code == 200, path
    assert (await closed.client.get("/health")).status_code == 200  # probes need no key
    opened = await server_factory(open_meta=True)
    await opened.services.keys.create("team-a")
    assert (await opened.client.get("/metrics")).status_code == 200


async def test_a_project_has_a_bounded_number_of_realtime_calls_in_flight(
    server_factory: Any,
) -> None:
    import asyncio

    server = await server_factory(
        max_realtime_calls_per_project=2, engine_options={"latency_ms": 300}
    )
    a, _ = await server.services.keys.create("team-a")
    b, _ = await server.services.keys.create("team-b")
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}

    def call(key: str) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        return server.client.post("/v1/chat/completions", json=chat, headers=headers)

    answers = await asyncio.gather(call(a), call(a), call(a), call(b))
    codes = sorted(r.status_code for r in answers[:3])
    assert codes == [200, 200, 429] and answers[3].status_code == 200
    refused = next(r for r in answers if r.status_code == 429)
    assert "team-a" in refused.json()["error"]["message"]
    assert (await call(a)).status_code == 200  # the slots are given back


async def test_a_call_past_its_compute_budget_is_stopped_with_504(
    server_factory: Any, tmp_path: Path
) -> None:
    import asyncio

    calls = tmp_path / "calls.log"
    server = await server_factory(
        max_request_seconds=0.2, engine_options={"latency_ms": 1000, "call_log": str(calls)}
    )
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    for stream in (False, True):
        answer = await server.client.post("/v1/chat/completions", json={**chat, "stream": stream})
        assert answer.status_code == 504, answer.text
        error = answer.json()["error"]
        assert error["code"] == "compute_budget_exceeded" and "0.2 s" in error["message"]
    await asyncio.sleep(1.5)  # past the engine's second: work left running would be logged
    assert not calls.exists() or calls.read_text() == ""


async def test_streaming_answers_and_its_wrong_uses(server: Server) -> None:
    import json

    chat = {"model": "echo", "messages": [{"role": "user", "content": "a b c"}]}
    streamed = await server.client.post(
        "/v1/completions", json={"model": "echo", "prompt": "a b c", "stream": True}
    )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in streamed.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert "".join(c["choices"][0]["text"] for c in chunks) == "echo: a b c"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    embeds = await server.client.post(
        "/v1/embeddings", json={"model": "vec", "input": "x", "stream": True}
    )
    assert embeds.status_code == 400 and embeds.json()["error"]["param"] == "stream"
    stray = await server.client.post(
        "/v1/chat/completions", json={**chat, "stream_options": {"include_usage": True}}
    )
    assert stray.status_code == 400 and stray.json()["error"]["param"] == "stream_options"
    odd = await server.client.post("/v1/chat/completions", json={**chat, "stream": "yes"})
    assert odd.status_code == 400 and odd.json()["error"]["param"] == "stream"
    unknown = await server.client.post(
        "/v1/chat/completions", json={**chat, "model": "nope", "stream": True}
    )
    assert unknown.status_code == 404  # before the first word: a plain HTTP error


async def test_the_anthropic_routes_take_x_api_key_and_answer_errors_in_their_shape(
    server: Server,
) -> None:
    secret, _ = await server.services.keys.create("team-a")
    params = {"model": "echo", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    refused = await server.client.post("/v1/messages", json=params)
    assert refused.status_code == 401
    assert refused.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": refused.json()["error"]["message"]},
    }
    answered = await server.client.post("/v1/messages", json=params, headers={"x-api-key": secret})
    assert answered.status_code == 200 and answered.json()["content"][0]["text"] == "echo: hi"
    other = await server.client.get(
        "/v1/messages/batches/msgbatch_nope", headers={"x-api-key": secret}
    )
    assert other.status_code == 404 and other.json()["error"]["type"] == "not_found_error"
    openai_side = await server.client.get("/v1/batches", headers={"x-api-key": secret})
    assert openai_side.status_code == 200  # one key, both APIs
