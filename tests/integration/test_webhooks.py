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


async def test_a_hanging_receiver_costs_one_timeout_not_one_per_event() -> None:

    from slackwater.domain.clock import utcnow
    from slackwater.policy.retry import RetryPolicy
    from slackwater.ports import Delivery
    from slackwater.runtime.webhooks import WebhookSender

    class Outbox:
        """Five events due; what the sender reports back is kept."""

        def __init__(self) -> None:
            self.due = [Delivery(i, f"batch_{i}", "batch.completed", b"{}", 0) for i in range(5)]
            self.failed: list[int] = []

        async def due_deliveries(self, now: Any, limit: int) -> list[Delivery]:
            return self.due

        async def delivered(self, delivery_id: int, now: Any) -> None:
            raise AssertionError("nothing answers in time")

        async def delivery_failed(self, delivery_id: int, error: str, next_at: Any) -> None:
            self.failed.append(delivery_id)

        async def get_batch(self, project: Any, batch_id: str) -> Any:
            from slackwater.domain.errors import NotFound

            raise NotFound()

    # A receiver that accepts connections and never answers.
    hung: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)
        await asyncio.sleep(30)

    receiver = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = receiver.sockets[0].getsockname()[1]
    outbox = Outbox()
    sender = WebhookSender(
        outbox,  # type: ignore[arg-type]
        utcnow,
        f"http://127.0.0.1:{port}/hook",
        None,
        policy=RetryPolicy(max_attempts=3, base_seconds=1, max_seconds=60),
        timeout=0.5,
    )
    try:
        assert await sender.send_due() == 0
        # All five were in flight at once, each given up after the timeout.
        assert len(hung) == 5 and sorted(outbox.failed) == [0, 1, 2, 3, 4]
        # The receiver is paused now: the next round sends nothing and waits for nobody.
        assert await sender.send_due() == 0 and len(hung) == 5 and len(outbox.failed) == 5
    finally:
        receiver.close()
