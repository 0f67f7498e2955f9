"""Bad input through the whole path (upload, intake, API): each answer names the line and
field; nothing crashes; accepted work is not lost."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from slackwater.config import ModelConfig
from slackwater.domain.batch import BatchStatus
from tests.integration.conftest import Server, chat_line


async def test_mixed_encodings_and_a_ten_megabyte_line_are_accepted(
    server_factory: Any,
) -> None:
    roomy = ModelConfig(name="echo", engine="fake", endpoints=["/v1/chat/completions"])
    server = await server_factory(models=[roomy])  # no context window to fill
    huge = chat_line(1)
    huge["body"]["messages"][0]["content"] = "x" * (10 * 1024 * 1024)
    raw = (
        b"\xef\xbb\xbf"
        + json.dumps(chat_line(0)).encode()
        + b"\r\n"  # BOM, CRLF
        + json.dumps(huge).encode()
        + b"\n\n"  # a 10 MB line, a blank line
        + json.dumps(chat_line(2)).encode()  # no final newline
    )
    file = (await server.upload(raw)).json()
    assert file["bytes"] == len(raw)
    batch = (
        await server.client.post(
            "/v1/batches",
            json={
                "input_file_id": file["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "1h",
            },
        )
    ).json()
    done = await server.wait(batch["id"])
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 3
    out = await server.lines(done["output_file_id"])
    assert [o["custom_id"] for o in out] == ["req-0", "req-1", "req-2"]


async def test_a_line_past_its_models_context_fails_validation(server: Server) -> None:
    huge = chat_line(1)
    huge["body"]["messages"][0]["content"] = "x" * (1024 * 1024)  # the model holds 4096
    batch = await server.submit([chat_line(0), huge, chat_line(2, max_tokens=5000)])
    done = await server.wait(batch["id"])
    assert done["status"] == "failed"
    errors = [(e["line"], e["code"], e["param"]) for e in done["errors"]["data"]]
    assert errors == [
        (2, "context_length_exceeded", "body.messages"),
        (3, "context_length_exceeded", "body.max_tokens"),
    ]
    message = done["errors"]["data"][0]["message"]
    assert "at least 1310" in message and "context window of 4096" in message


async def test_every_kind_of_bad_line_is_named(server: Server) -> None:
    good = chat_line(0)
    lines: list[Any] = [
        good,
        b"\xff\xfe not utf-8",
        '{"custom_id": "t", "method": "POST"',  # truncated
        "[" * 3000 + "]" * 3000,  # deeply nested
        {**chat_line(4), "body": ["not", "an", "object"]},
        chat_line(0),  # duplicate custom_id
        chat_line(6, model="no-such-model"),
        {**chat_line(7), "url": "/v1/embeddings"},
        chat_line(8, max_tokens=1_000_000),
    ]
    raw = b"".join(
        (x if isinstance(x, bytes) else (x if isinstance(x, str) else json.dumps(x)).encode())
        + b"\n"
        for x in lines
    )
    batch = (
        await server.client.post(
            "/v1/batches",
            json={
                "input_file_id": (await server.upload(raw)).json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "1h",
            },
        )
    ).json()
    failed = await server.wait(batch["id"])
    assert failed["status"] == "failed"
    found = [(e["line"], e["code"], e["param"]) for e in failed["errors"]["data"]]
    assert found == [
        (2, "invalid_json_line", None),
        (3, "invalid_json_line", None),
        (4, "invalid_json_line", None),
        (5, "invalid_type", "body"),
        (6, "duplicate_custom_id", "custom_id"),
        (7, "model_not_found", "body.model"),
        (8, "invalid_url", "url"),
        (9, "context_length_exceeded", "body.max_tokens"),
    ]
    assert all(e["message"] for e in failed["errors"]["data"])
    # Nothing of the failed file ran, and the server goes on serving.
    assert failed["request_counts"]["total"] == 0
    assert (await server.wait((await server.submit([good]))["id"]))["status"] == "completed"


async def test_deleting_an_input_file_while_its_batch_validates_is_refused(
    server_factory: Any,
) -> None:
    server = await server_factory()
    server.services.monitor.stop()  # hold the batch in validating
    await asyncio.sleep(0.1)
    batch = await server.submit([chat_line(i) for i in range(3)])
    deleted = await server.client.delete(f"/v1/files/{batch['input_file_id']}")
    assert deleted.status_code == 409
    error = deleted.json()["error"]
    assert error["param"] == "file_id" and batch["id"] in error["message"]
    assert (await server.client.get(f"/v1/files/{batch['input_file_id']}")).status_code == 200


async def test_a_batch_whose_input_vanished_fails_once_and_clearly(server_factory: Any) -> None:
    server = await server_factory()
    calls: list[str] = []
    ingest = server.services.intake.ingest

    async def counted(batch_id: str) -> Any:
        calls.append(batch_id)
        await asyncio.sleep(0.05)  # still under way at the next tick
        return await ingest(batch_id)

    server.services.intake.ingest = counted  # type: ignore[method-assign]
    listed = server.services.store.batch_ids_in

    async def stale(status: BatchStatus, **options: Any) -> list[str]:
        # The answer is on its way back while the intake settles the batch: a list that
        # is stale when it arrives must not start the intake again.
        ids = await listed(status, **options)
        if status is BatchStatus.VALIDATING and ids:
            await asyncio.sleep(0.1)
        return ids

    server.services.store.batch_ids_in = stale  # type: ignore[method-assign]
    file = (await server.upload([chat_line(0)])).json()
    await server.services.blobs.delete(file["id"])  # the content is gone, not the record
    created = await server.client.post(
        "/v1/batches",
        json={
            "input_file_id": file["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "1h",
        },
    )
    done = await server.wait(created.json()["id"])
    assert done["status"] == "failed"
    [error] = done["errors"]["data"]
    assert error["code"] == "input_file_missing" and error["param"] == "input_file_id"
    await asyncio.sleep(0.3)  # ~15 monitor ticks
    assert calls == [done["id"]]


async def test_an_intake_that_keeps_failing_is_retried_with_growing_pauses(
    server_factory: Any,
) -> None:
    server = await server_factory()
    calls: list[float] = []

    async def broken(batch_id: str) -> Any:
        calls.append(asyncio.get_running_loop().time())
        raise RuntimeError("the disk is on fire")

    server.services.intake.ingest = broken  # type: ignore[method-assign]
    await server.submit([chat_line(0)])
    await asyncio.sleep(1.6)  # 80 ticks of 0.02 s
    # Tried at once, then after 1 s: not once a tick.
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.95
