"""Realtime endpoints on the same engines, and API keys with per-project isolation."""

from __future__ import annotations

from pathlib import Path

from slackwater.api.auth import hash_key
from slackwater.domain.clock import utcnow
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
    store = server.services.store
    await store.add_key(hash_key("sk-a"), "team-a", utcnow())
    await store.add_key(hash_key("sk-b"), "team-b", utcnow())
    a = {"Authorization": "Bearer sk-a"}
    b = {"Authorization": "Bearer sk-b"}
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
