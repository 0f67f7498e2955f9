"""Webhooks: signed, retried, and not lost when the server restarts before sending."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slackwater.runtime.webhooks import SIGNATURE_HEADER, verify
from tests.conftest import free_port
from tests.integration.conftest import Server, chat_line
from tests.loopback import serve_in_thread

SECRET = "whsec-test"


def receiver(received: list[dict[str, Any]], failures: list[int]) -> Starlette:
    async def hook(request: Request) -> Response:
        body = await request.body()
        if failures:
            failures.pop()
            return Response(status_code=503)
        received.append(
            {
                "valid": verify(SECRET, request.headers[SIGNATURE_HEADER], body),
                "tampered": verify(SECRET, request.headers[SIGNATURE_HEADER], body + b" "),
                **json.loads(body),
            }
        )
        return Response(status_code=204)

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


async def wait_for(predicate: Any, limit: float = 20) -> None:
    for _ in range(int(limit / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_signed_events_are_retried_until_delivered(server_factory: Any) -> None:
    received: list[dict[str, Any]] = []
    with serve_in_thread(receiver(received, failures=[1, 1])) as url:
        server: Server = await server_factory(
            webhook_url=url + "/hook",
            webhook_secret=SECRET,
            webhook_retry_base_seconds=0.05,
            engine_options={"latency_ms": 100},
        )
        server.services.webhooks.interval = 0.05  # type: ignore[union-attr]
        done = await server.wait((await server.submit([chat_line(0)]))["id"])
        cancelled = await server.submit([chat_line(i) for i in range(3)])
        await server.client.post(f"/v1/batches/{cancelled['id']}/cancel")
        await server.wait(cancelled["id"])
        await wait_for(lambda: len(received) == 2)
    by_batch = {event["data"]["id"]: event for event in received}
    event = by_batch[done["id"]]
    assert event["type"] == "batch.completed" and event["valid"] and not event["tampered"]
    assert event["data"]["status"] == "completed" and event["data"]["output_file_id"]
    assert by_batch[cancelled["id"]]["type"] == "batch.cancelled"


async def test_events_survive_a_restart(server_factory: Any, tmp_path: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    first: Server = await server_factory(
        data_dir=tmp_path / "shared",
        webhook_url=dead,
        webhook_secret=SECRET,
        webhook_retry_base_seconds=0.05,
    )
    done = await first.wait((await first.submit([chat_line(0)]))["id"])
    await first.services.stop()
    received: list[dict[str, Any]] = []
    with serve_in_thread(receiver(received, failures=[])) as url:
        second: Server = await server_factory(
            data_dir=tmp_path / "shared",
            webhook_url=url + "/hook",
            webhook_secret=SECRET,
            webhook_retry_base_seconds=0.05,
        )
        second.services.webhooks.interval = 0.05  # type: ignore[union-attr]
        await wait_for(lambda: len(received) == 1)
    assert received[0]["data"]["id"] == done["id"] and received[0]["valid"]
