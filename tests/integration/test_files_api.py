"""Files API: streaming uploads, limits, listing, content, deletion."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Server, chat_line


async def test_upload_list_get_content_delete(server: Server) -> None:
    raw = b'{"a": 1}\n{"b": 2}\n{"c": 3}'
    created = (await server.upload(raw, name="my.jsonl")).json()
    assert created["object"] == "file" and created["purpose"] == "batch"
    assert created["bytes"] == len(raw) and created["filename"] == "my.jsonl"
    listed = (await server.client.get("/v1/files")).json()
    assert [f["id"] for f in listed["data"]] == [created["id"]]
    got = (await server.client.get(f"/v1/files/{created['id']}")).json()
    assert got == created
    content = await server.client.get(f"/v1/files/{created['id']}/content")
    assert content.content == raw
    deleted = (await server.client.delete(f"/v1/files/{created['id']}")).json()
    assert deleted == {"id": created["id"], "object": "file", "deleted": True}
    assert (await server.client.get(f"/v1/files/{created['id']}")).status_code == 404
    assert (await server.client.get(f"/v1/files/{created['id']}/content")).status_code == 404


async def test_upload_errors(server_factory: Any) -> None:
    server: Server = await server_factory(max_file_bytes=1000, max_file_lines=3)
    too_big = await server.upload(b"x" * 2000)
    assert too_big.status_code == 400 and too_big.json()["error"]["param"] == "file"
    too_long = await server.upload(b"{}\n" * 4)
    assert too_long.status_code == 400 and "lines" in too_long.json()["error"]["message"]
    bad_purpose = await server.client.post(
        "/v1/files", files={"file": ("a.jsonl", b"{}")}, data={"purpose": "fine-tune"}
    )
    assert bad_purpose.status_code == 400 and bad_purpose.json()["error"]["param"] == "purpose"
    no_file = await server.client.post("/v1/files", data={"purpose": "batch"})
    assert no_file.status_code == 400
    not_multipart = await server.client.post("/v1/files", json={"purpose": "batch"})
    assert not_multipart.status_code == 400
    assert not_multipart.json()["error"]["code"] == "invalid_content_type"
    assert (await server.client.get("/v1/files")).json()["data"] == []
    # Rejected uploads leave nothing behind on disk.
    assert [p for p in server.services.blobs.root.iterdir()] == []  # type: ignore[attr-defined]
    ok = await server.upload([chat_line(0)])
    assert ok.status_code == 200
