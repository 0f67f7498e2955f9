"""Webhooks: Standard Webhooks events that the `openai` SDK verifies, per-project
endpoints managed through the API, retried, and not lost when the server restarts."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

from openai import InvalidWebhookSignatureError, OpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from slackwater.runtime.webhooks import SIGNATURE_HEADER, verify
from tests.conftest import free_port
from tests.integration.conftest import Server, chat_line
from tests.loopback import serve_in_thread

SECRET = "whsec_" + base64.b64encode(b"a test secret of 32 bytes, give or take").decode()
SDK = OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")


def unwrapped(body: bytes, headers: dict[str, str], secret: str) -> dict[str, Any] | None:
    """The event as the openai SDK reads it, or None if the SDK refuses its signature."""
    try:
        event = SDK.webhooks.unwrap(body, headers, secret=secret)
    except InvalidWebhookSignatureError:
        return None
    return event.to_dict()


def receiver(
    received: list[dict[str, Any]],
    failures: list[int],
    secrets: Callable[[], list[str]] = lambda: [SECRET],
) -> Starlette:
    async def hook(request: Request) -> Response:
        body = await request.body()
        if failures:
            failures.pop()
            return Response(status_code=503)
        headers = dict(request.headers)
        received.append(
            {
                "path": request.url.path,
                "headers": headers,
                "verified": [unwrapped(body, headers, s) is not None for s in secrets()],
                "tampered": unwrapped(
                    body.replace(b'"data"', b'"dat\\u0061"'), headers, secrets()[0]
                ),
                **json.loads(body),
            }
        )
        return Response(status_code=204)

    return Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])


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
    assert event["type"] == "batch.completed" and event["object"] == "event"
    assert event["verified"] == [True] and event["tampered"] is None
    assert event["data"] == {"id": done["id"]}  # thin: the receiver reads the batch by id
    assert event["headers"]["webhook-id"] == event["id"] and event["id"].startswith("evt_")
    assert event["headers"]["webhook-signature"].startswith("v1,")
    assert by_batch[cancelled["id"]]["type"] == "batch.cancelled"


async def test_the_earlier_format_when_configured(server_factory: Any) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        body = await request.body()
        signature = request.headers[SIGNATURE_HEADER]
        received.append({"valid": verify("plain", signature, body), **json.loads(body)})
        return Response(status_code=204)

    with serve_in_thread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        server: Server = await server_factory(
            webhook_url=url + "/hook", webhook_secret="plain", webhook_format="slackwater"
        )
        server.services.webhooks.interval = 0.05  # type: ignore[union-attr]
        done = await server.wait((await server.submit([chat_line(0)]))["id"])
        await wait_for(lambda: len(received) == 1)
    assert received[0]["valid"] and received[0]["data"]["status"] == "completed"
    assert received[0]["data"]["id"] == done["id"] and received[0]["data"]["output_file_id"]


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
    assert received[0]["data"]["id"] == done["id"] and received[0]["verified"] == [True]


async def test_endpoints_per_project_through_the_api(server_factory: Any) -> None:
    received: list[dict[str, Any]] = []
    secrets: dict[str, str] = {}
    with serve_in_thread(
        receiver(received, failures=[], secrets=lambda: list(secrets.values()))
    ) as url:
        server: Server = await server_factory(webhook_allow_http=True)
        server.services.webhooks.interval = 0.05  # type: ignore[union-attr]
        key_a, _ = await server.services.keys.create("team-a")
        key_b, _ = await server.services.keys.create("team-b")
        a = {"Authorization": f"Bearer {key_a}"}
        b = {"Authorization": f"Bearer {key_b}"}
        made = await server.client.post(
            "/v1/webhook_endpoints",
            json={
                "name": "done",
                "url": url + "/a",
                "event_types": ["batch.completed", "response.completed"],
            },
            headers=a,
        )
        assert made.status_code == 200, made.text
        endpoint = made.json()
        assert endpoint["object"] == "webhook_endpoint" and endpoint["signing_secret"].startswith(
            "whsec_"
        )
        secrets["a"] = endpoint["signing_secret"]
        listed = (await server.client.get("/v1/webhook_endpoints", headers=a)).json()
        assert [e["id"] for e in listed["data"]] == [endpoint["id"]]
        assert "signing_secret" not in listed["data"][0]
        assert listed["data"][0]["signing_secret_hint"].endswith(secrets["a"][-4:])
        assert (await server.client.get("/v1/webhook_endpoints", headers=b)).json()["data"] == []
        path = f"/v1/webhook_endpoints/{endpoint['id']}"
        assert (await server.client.get(path, headers=b)).status_code == 404
        assert (await server.client.delete(path, headers=b)).status_code == 404
        types = (await server.client.get("/v1/webhook_event_types", headers=a)).json()["data"]
        assert "response.incomplete" in types and "batch.expired" in types

        # Team b's batch and team a's batch and background response: a hears its own.
        await server.wait((await server.submit([chat_line(0)], headers=b))["id"], headers=b)
        done = await server.wait((await server.submit([chat_line(1)], headers=a))["id"], headers=a)
        queued = (
            await server.client.post(
                "/v1/responses",
                json={"model": "echo", "input": "hi", "background": True},
                headers=a,
            )
        ).json()
        await wait_for(lambda: len(received) == 2)
        by_type = {event["type"]: event for event in received}
        assert by_type["batch.completed"]["data"] == {"id": done["id"]}
        assert by_type["response.completed"]["data"] == {"id": queued["id"]}
        assert all(e["verified"] == [True] and e["path"] == "/a" for e in received)

        # A rotation that keeps the old secret signs with both for a day.
        rotated = await server.client.post(
            f"{path}/rotate_secret", json={"keep_old_secret_active_for_24_hours": True}, headers=a
        )
        secrets["new"] = rotated.json()["signing_secret"]
        assert secrets["new"] != secrets["a"]
        changed = await server.client.post(
            path,
            json={"event_types": ["batch.failed", "batch.completed"], "url": url + "/b"},
            headers=a,
        )
        assert changed.json()["event_types"] == ["batch.failed", "batch.completed"]
        tested = (
            await server.client.post(f"{path}/test", json={"event_type": "batch.failed"}, headers=a)
        ).json()
        assert tested["status_code"] == 204 and tested["success"] is True
        await wait_for(lambda: len(received) == 3)
        assert received[2]["type"] == "batch.failed" and received[2]["verified"] == [True, True]
        assert received[2]["path"] == "/b"
        deleted = await server.client.delete(path, headers=a)
        assert deleted.json() == {
            "id": endpoint["id"],
            "object": "webhook_endpoint.deleted",
            "deleted": True,
        }
        assert (await server.client.get(path, headers=a)).status_code == 404


async def test_bad_endpoints_are_refused_naming_the_field(server: Server) -> None:
    cases = [
        ({"name": "x", "url": "ftp://host/x", "event_types": ["batch.completed"]}, "url"),
        ({"name": "x", "url": "http://host/x", "event_types": ["batch.completed"]}, "url"),
        ({"name": "x", "url": "https://host/x", "event_types": ["batch.done"]}, "event_types[0]"),
        ({"name": "x", "url": "https://host/x", "event_types": []}, "event_types"),
        ({"name": "", "url": "https://host/x", "event_types": ["batch.failed"]}, "name"),
    ]
    for body, param in cases:
        refused = await server.client.post("/v1/webhook_endpoints", json=body)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["error"]["param"] == param


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
