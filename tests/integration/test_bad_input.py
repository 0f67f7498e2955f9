"""Bad input through the whole path (upload, intake, API): each answer names the line and
field; nothing crashes; accepted work is not lost."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.conftest import Server, chat_line


async def test_mixed_encodings_and_a_ten_megabyte_line_are_accepted(server: Server) -> None:
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
