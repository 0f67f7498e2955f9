"""Files API: streaming uploads, limits, listing, content, deletion."""

from __future__ import annotations

import asyncio
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


async def test_hostile_filenames_and_ids(server: Server) -> None:
    # A 10 KB filename is past the multipart parser's header limit: a clear 400, not a 500.
    long_name = await server.upload(b"{}\n", name="a" * 10_240 + ".jsonl")
    assert long_name.status_code == 400, long_name.text
    assert long_name.json()["error"]["code"] == "invalid_multipart"
    odd = (await server.upload(b"{}\n", name="../../xy\u202ez<i>.jsonl")).json()
    assert odd["filename"] == "xyz_i_.jsonl"
    huge_id = "file_" + "9" * 60_000  # (httpx refuses URLs of 64 KiB)
    missing = await server.client.get(f"/v1/files/{huge_id}")
    assert missing.status_code == 404 and len(missing.text) < 400


async def test_slow_and_parallel_uploads_are_cut_off(server_factory: Any) -> None:
    import asyncio

    server: Server = await server_factory(
        upload_idle_seconds=0.3, max_concurrent_uploads_per_project=2
    )
    boundary = "xYz"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.jsonl"\r\n'
        "\r\n"
    ).encode()
    started = asyncio.Event()

    async def trickle(pause: float) -> Any:
        yield head
        started.set()
        await asyncio.sleep(pause)  # a client that stops sending
        yield f"{{}}\n\r\n--{boundary}--\r\n".encode()

    def upload(pause: float) -> Any:
        return server.client.post(
            "/v1/files",
            content=trickle(pause),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )

    stalled = await upload(1.0)
    assert stalled.status_code == 408 and stalled.json()["error"]["code"] == "request_timeout"
    # Two uploads in flight: a third from the same project waits for neither.
    first, second = asyncio.create_task(upload(0.2)), asyncio.create_task(upload(0.2))
    await asyncio.sleep(0.05)
    third = await server.upload(b"{}\n")
    assert third.status_code == 429
    assert [(await t).status_code for t in (first, second)] == [200, 200]
    assert (await server.upload(b"{}\n")).status_code == 200  # slots are given back


async def test_files_expire_and_list_oldest_first(server: Server) -> None:
    from datetime import timedelta

    server.services.monitor.expiry_seconds = 0  # type: ignore[union-attr]
    kept = (await server.upload(b"{}\n", name="kept.jsonl")).json()
    brief = (
        await server.client.post(
            "/v1/files",
            files={"file": ("brief.jsonl", b"{}\n")},
            data={
                "purpose": "batch",
                "expires_after[anchor]": "created_at",
                "expires_after[seconds]": "3600",
            },
        )
    ).json()
    assert kept["expires_at"] is None and brief["expires_at"] == brief["created_at"] + 3600
    oldest = (await server.client.get("/v1/files", params={"order": "asc"})).json()
    assert [f["id"] for f in oldest["data"]] == [kept["id"], brief["id"]]
    too_short = await server.client.post(
        "/v1/files",
        files={"file": ("x.jsonl", b"{}\n")},
        data={
            "purpose": "batch",
            "expires_after[anchor]": "created_at",
            "expires_after[seconds]": "60",
        },
    )
    assert too_short.status_code == 400
    assert too_short.json()["error"]["param"] == "expires_after.seconds"
    server.clock.offset = timedelta(hours=1, seconds=1)
    for _ in range(100):  # the monitor deletes it on its next round
        if (await server.client.get(f"/v1/files/{brief['id']}")).status_code == 404:
            break
        await asyncio.sleep(0.05)
    assert (await server.client.get(f"/v1/files/{brief['id']}")).status_code == 404
    assert (await server.client.get(f"/v1/files/{kept['id']}")).status_code == 200
