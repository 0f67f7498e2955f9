"""Named routes from the config, and user-registered checks in the cascade."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from slackwater.config import RouteConfig, Settings
from slackwater.domain.errors import ConfigError
from tests.integration.conftest import Server, chat_line
from tests.integration.test_cascade import models

CHECK = "tests.integration.test_named_routes:answered_by_the_best"


def answered_by_the_best(request: Mapping[str, Any], response: Mapping[str, Any]) -> str | None:
    """A user check: only the best model's answers will do."""
    return None if response.get("model") == "best" else f"{response.get('model')} is not best"


async def test_a_named_route_routes_like_auto_with_its_constraints(server_factory: Any) -> None:
    routes = [
        RouteConfig(name="strict", min_quality=0.75, checks=["best_only"]),
        RouteConfig(name="cheap"),
    ]
    server: Server = await server_factory(
        models=models(), routes=routes, checks={"best_only": CHECK}
    )
    lines = [chat_line(0, model="strict"), chat_line(1, model="cheap")]
    done = await server.wait((await server.submit(lines))["id"])
    assert done["status"] == "completed"
    out = {
        o["custom_id"]: o["response"]["body"] for o in await server.lines(done["output_file_id"])
    }

    strict = out["req-0"]["slackwater"]["route"]
    assert strict["requested"] == "strict"
    # min_quality 0.75 passes over prose (0.7); the user check escalates json to best.
    assert "prose" in strict["passed_over"]
    [attempt] = strict["attempts"]
    assert attempt["model"] == "json"
    assert attempt["failed_check"] == "check best_only: json is not best"
    assert out["req-0"]["model"] == "best"

    cheap = out["req-1"]["slackwater"]["route"]
    assert (cheap["requested"], cheap["model"], cheap["attempts"]) == ("cheap", "prose", [])


async def test_unknown_checks_are_named_with_their_line(server_factory: Any) -> None:
    server: Server = await server_factory(models=models())
    lines = [chat_line(0, model="auto", slackwater={"checks": ["nope"]})]
    done = await server.wait((await server.submit(lines))["id"])
    assert done["status"] == "failed"
    [error] = done["errors"]["data"]
    assert error["line"] == 1 and error["param"] == "body.slackwater.checks"
    assert "unknown checks ['nope']" in error["message"]


async def test_realtime_requests_use_named_routes(server_factory: Any) -> None:
    server: Server = await server_factory(models=models(), routes=[RouteConfig(name="cheap")])
    answer = await server.client.post(
        "/v1/chat/completions", json=chat_line(0, model="cheap")["body"]
    )
    assert answer.status_code == 200, answer.text
    route = answer.json()["slackwater"]["route"]
    assert (route["requested"], route["model"]) == ("cheap", "prose")


def test_route_names_and_checks_are_checked_in_the_config() -> None:
    with pytest.raises(ConfigError, match="route 'prose' has the name of a model"):
        Settings.load(models=models(), routes=[RouteConfig(name="prose")])
    with pytest.raises(ConfigError, match="check_regex is not a regex"):
        Settings.load(routes=[{"name": "r", "check_regex": "("}])


def test_a_check_that_cannot_be_loaded_is_a_config_error() -> None:
    from slackwater.runtime.plugins import load_checks

    with pytest.raises(ConfigError, match=r"checks\.mine: cannot load 'nowhere:thing'"):
        load_checks({"mine": "nowhere:thing"})
    assert load_checks({"ok": CHECK})["ok"] is answered_by_the_best
