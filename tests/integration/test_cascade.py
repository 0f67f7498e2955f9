"""The cascade: a cheap model's answer that fails its check runs again on the next model
up, and the output records every attempt with its cost."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from slackwater.config import ModelConfig, PoolConfig
from tests.integration.conftest import Server, chat_line

SCHEMA = {"type": "object", "required": ["echo"], "properties": {"echo": {"type": "string"}}}


def models() -> list[ModelConfig]:
    chat = ["/v1/chat/completions"]
    return [
        # Cheapest: answers in prose, so it fails any JSON check.
        ModelConfig(
            name="prose",
            engine="fake",
            endpoints=chat,
            features=["json_schema"],
            price={"input": "0.1", "output": "0.2"},
            quality={"default": 0.7},
        ),
        ModelConfig(
            name="json",
            engine="fake",
            endpoints=chat,
            features=["json_schema"],
            options={"json_answers": True},
            price={"input": "1", "output": "2"},
            quality={"default": 0.8},
        ),
        ModelConfig(
            name="best",
            engine="fake",
            endpoints=chat,
            features=["json_schema"],
            options={"json_answers": True},
            price={"input": "10", "output": "20"},
            quality={"default": 0.95},
        ),
    ]


async def test_invalid_json_escalates_and_both_attempts_are_recorded(
    server_factory: Any,
) -> None:
    # The machine is billed by the hour: every attempt costs its engine time.
    machine = PoolConfig(name="box", kind="local", price_per_hour=Decimal("3600"))
    server: Server = await server_factory(models=models(), pools=[machine])
    wants_json = {"type": "json_schema", "json_schema": {"name": "echo", "schema": SCHEMA}}
    lines = [
        chat_line(0, model="auto", response_format=wants_json),
        chat_line(1, model="auto"),  # plain text is fine: no escalation
        chat_line(2, model="auto", slackwater={"check_regex": "^never$"}),
    ]
    done = await server.wait((await server.submit(lines))["id"])
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 3
    out = {
        o["custom_id"]: o["response"]["body"] for o in await server.lines(done["output_file_id"])
    }

    first = out["req-0"]
    assert first["model"] == "json"
    route = first["slackwater"]["route"]
    assert route["model"] == "json" and route["ladder"] == ["prose", "json", "best"]
    [attempt] = route["attempts"]
    assert attempt["model"] == "prose" and attempt["failed_check"].startswith("invalid JSON")
    assert float(attempt["cost_usd"]) > 0 and attempt["usage"]["completion_tokens"] > 0
    assert "escalated" in route["reason"]

    assert (
        out["req-1"]["model"] == "prose" and out["req-1"]["slackwater"]["route"]["attempts"] == []
    )

    # Nothing passes the regex: it climbs the whole ladder and the best answer stands.
    third = out["req-2"]["slackwater"]["route"]
    assert [a["model"] for a in third["attempts"]] == ["prose", "json"]
    assert out["req-2"]["model"] == "best"

    # The ledger charges each request for all its attempts.
    ledger = {r.key: r for r in await server.services.store.ledger("model")}
    attempts = sum(Decimal(a["cost_usd"]) for a in [*route["attempts"], *third["attempts"]])
    total = sum((r.cost for r in ledger.values()), Decimal(0))
    assert Decimal(done["slackwater"]["cost"]["cost_usd"]) == total
    assert total > attempts > 0


async def test_check_results_teach_the_router(server_factory: Any) -> None:
    server: Server = await server_factory(models=models())
    wants_json = {"type": "json_object"}
    teach = [
        chat_line(i, model="auto", response_format=wants_json, slackwater={"task": "extract"})
        for i in range(10)
    ]
    await server.wait((await server.submit(teach))["id"])
    # prose failed its JSON check 10 times for "extract": 0.7 -> (0.7*20 + 0) / 30 = 0.47.
    ask = [
        chat_line(i, model="auto", slackwater={"task": "extract", "min_quality": 0.65})
        for i in range(3)
    ]
    done = await server.wait((await server.submit(ask))["id"])
    out = await server.lines(done["output_file_id"])
    routes = [o["response"]["body"]["slackwater"]["route"] for o in out]
    assert {r["model"] for r in routes} == {"json"}
    assert routes[0]["passed_over"]["prose"] == "predicted quality 0.47 is under 0.65"
    # Another task has seen no outcomes: the catalog score still holds there.
    other = [chat_line(0, model="auto", slackwater={"task": "chat", "min_quality": 0.65})]
    plain = await server.wait((await server.submit(other))["id"])
    [line] = await server.lines(plain["output_file_id"])
    assert line["response"]["body"]["model"] == "prose"


async def test_realtime_auto_routing(server_factory: Any) -> None:
    server: Server = await server_factory(models=models())
    answer = await server.client.post(
        "/v1/chat/completions",
        json={
            "model": "auto",
            "messages": [{"role": "user", "content": "hi"}],
            "slackwater": {"min_quality": 0.75},
        },
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["model"] == "json" and body["slackwater"]["route"]["model"] == "json"
    refused = await server.client.post(
        "/v1/chat/completions",
        json={
            "model": "auto",
            "messages": [{"role": "user", "content": "hi"}],
            "slackwater": {"min_quality": 0.99},
        },
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "no_route"
    bad = await server.client.post(
        "/v1/chat/completions",
        json={
            "model": "auto",
            "messages": [{"role": "user", "content": "hi"}],
            "slackwater": {"min_quality": "high"},
        },
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "body.slackwater.min_quality"
