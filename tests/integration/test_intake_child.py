"""Large input files are checked in a child process: same acceptance, same errors named
by line, and a child that dies leaves the batch to be validated again from the start."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from slackwater.config import ModelConfig
from tests.integration.conftest import Server, chat_line

MODELS = [
    ModelConfig(
        name="echo",
        engine="fake",
        endpoints=["/v1/chat/completions"],
        max_batch_size=50,
        price={"input": "0.1", "output": "0.1"},
        quality={"default": 0.6},
    )
]


async def child_server(server_factory: Any, child_lines: int = 100) -> Server:
    server: Server = await server_factory(
        models=MODELS, ingest_child_lines=child_lines, ingest_chunk=40
    )
    return server


async def test_a_large_file_checked_in_a_child_runs_like_any_other(
    server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await child_server(server_factory)
    checkers = server.services.intake.checkers
    for _ in range(100):  # the monitor starts a spare checker as it starts
        if checkers.waiting is not None:
            break
        await asyncio.sleep(0.01)
    spare = checkers.waiting
    assert spare is not None and spare.returncode is None
    lines = [chat_line(i, model="auto" if i % 10 == 0 else "echo") for i in range(300)]
    with caplog.at_level(logging.INFO, logger="slackwater.runtime.intake"):
        done = await server.wait((await server.submit(lines))["id"])
    assert "checking 300 lines in a child process" in caplog.text
    # The spare did the checking, and the next one waits.
    assert spare.returncode == 0
    assert checkers.waiting is not None and checkers.waiting.pid != spare.pid
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 300, "completed": 300, "failed": 0}
    out = await server.lines(done["output_file_id"])
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(300)]
    routed = [o for o in out if "slackwater" in o["response"]["body"]]
    assert len(routed) == 30 and routed[0]["response"]["body"]["slackwater"]["route"]["model"]


@pytest.mark.parametrize("child_lines", [100, 0], ids=["child", "thread"])
async def test_errors_from_the_checker_and_the_router_are_named_by_line(
    server_factory: Any, child_lines: int
) -> None:
    server = await child_server(server_factory, child_lines)
    lines: list[Any] = [chat_line(i) for i in range(300)]
    lines[6] = '{"custom_id": "broken", "method": "POST"'  # truncated JSON, line 7
    lines[149] = chat_line(1000, model="auto", slackwater={"min_quality": 0.99})  # no model fits
    lines[249] = chat_line(3)  # line 250 repeats line 4's custom_id
    done = await server.wait((await server.submit(lines))["id"])
    assert done["status"] == "failed"
    errors = done["errors"]["data"]
    assert [(e["line"], e["code"]) for e in errors] == [
        (7, "invalid_json_line"),
        (150, "no_route"),
        (250, "duplicate_custom_id"),
    ]
    batch = await server.services.store.get_batch(None, done["id"])
    assert batch.request_counts.total == 0  # nothing of a rejected file is kept


async def test_a_checker_that_dies_leaves_the_batch_to_validate_again(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slackwater.runtime import intake

    server = await child_server(server_factory)
    server.services.monitor.stop()  # type: ignore[union-attr]
    checkers = server.services.intake.checkers
    await checkers.close()  # no spare: the next child starts from argv
    batch = await server.submit([chat_line(i) for i in range(300)])
    monkeypatch.setattr(checkers, "argv", ("/bin/false",))
    with pytest.raises(intake.SlackwaterError, match="stopped early"):
        await server.services.intake.ingest(batch["id"])
    stuck = await server.services.store.get_batch(None, batch["id"])
    assert stuck.status.value == "validating"
    monkeypatch.undo()
    ready = await server.services.intake.ingest(batch["id"])
    assert ready.status.value == "in_progress" and ready.request_counts.total == 300
