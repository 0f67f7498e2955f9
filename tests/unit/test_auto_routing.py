"""Lines asking for model "auto" are routed at intake; the extension field never reaches
an engine; bad constraints are named by line and field."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import pytest

from slackwater.config import ModelConfig
from slackwater.domain.errors import InvalidRequest
from slackwater.domain.model import Catalog, Tier
from slackwater.runtime.intake import LineRouter
from slackwater.runtime.routing import Ask, AutoRouter, Predict, Routed, lazy_counter
from slackwater.runtime.validation import LineChecker

CATALOG = Catalog(
    [
        ModelConfig(
            name="small",
            engine="fake",
            endpoints=["/v1/chat/completions"],
            context_window=2048,
            price={"input": "0.1", "output": "0.1"},
            quality={"default": 0.6, "extraction": 0.85},
        ).to_model(),
        ModelConfig(
            name="large",
            engine="fake",
            endpoints=["/v1/chat/completions"],
            context_window=128000,
            features=["json_schema"],
            price={"input": "5", "output": "15"},
            quality={"default": 0.9},
        ).to_model(),
    ]
)


def check(
    *bodies: dict[str, object],
    metadata: dict[str, str] | None = None,
    predict: Predict | None = None,
) -> LineChecker:
    router = AutoRouter(CATALOG, predict=predict)
    checker = LineChecker("/v1/chat/completions", CATALOG, routes=frozenset(router.routes))
    line_router = LineRouter(router, checker.endpoint, True, router.defaults(metadata), {})
    raw = b"".join(
        json.dumps(
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"messages": [{"role": "user", "content": "hi"}], **body},
            }
        ).encode()
        + b"\n"
        for i, body in enumerate(bodies)
    )
    rows, _, _ = checker.read_chunk(io.BytesIO(raw), 1, 100)
    checker.rows = line_router.route(rows, checker)  # type: ignore[attr-defined]
    return checker


def test_auto_lines_get_the_cheapest_model_that_meets_their_constraints() -> None:
    checker = check(
        {"model": "auto"},
        {"model": "auto", "slackwater": {"min_quality": 0.8}},
        {"model": "auto", "slackwater": {"task": "extraction", "min_quality": 0.8}},
        {"model": "auto", "response_format": {"type": "json_schema", "json_schema": {}}},
        {"model": "auto", "max_tokens": 4000},  # past the small model's context
        {"model": "small", "slackwater": {"note": "stripped too"}},
    )
    assert checker.errors == []
    rows = checker.rows  # type: ignore[attr-defined]
    assert [r.model for r in rows] == ["small", "large", "small", "large", "large", "small"]
    for row in rows:
        body = json.loads(row.body)
        assert body["model"] == row.model and "slackwater" not in body
    route = json.loads(rows[1].route)
    assert route["requested"] == "auto" and route["model"] == "large"
    assert "under 0.80" in route["passed_over"]["small"]
    assert rows[5].route is None


def test_batch_metadata_sets_default_constraints() -> None:
    checker = check(
        {"model": "auto"},
        {"model": "auto", "slackwater": {"min_quality": 0.5}},
        metadata={"slackwater.min_quality": "0.8"},
    )
    assert [r.model for r in checker.rows] == ["large", "small"]  # type: ignore[attr-defined]


def test_bad_constraints_and_impossible_requests_are_named() -> None:
    checker = check(
        {"model": "auto", "slackwater": {"min_quality": 2}},
        {"model": "auto", "slackwater": {"max_price": "cheap"}},
        {"model": "auto", "slackwater": {"features": ["telepathy"]}},
        {"model": "auto", "slackwater": {"min_quality": 0.95}},
    )
    assert [(e.line, e.param) for e in checker.errors] == [
        (1, "body.slackwater.min_quality"),
        (2, "body.slackwater.max_price"),
        (3, "body.slackwater.features"),
        (4, "body.model"),
    ]
    assert checker.errors[3].code == "no_route"
    assert "small predicted quality 0.60 is under 0.95" in checker.errors[3].message


def test_auto_routing_counts_tokens_with_a_models_tokenizer() -> None:
    words = {"small": lambda text: 10 * len(text.split())}  # a tokenizer that splits hard
    router = AutoRouter(CATALOG, counters=words)
    body = {"model": "auto", "messages": [{"role": "user", "content": "word " * 200}]}
    routed = router.resolve_one("/v1/chat/completions", body)
    assert routed.model == "large"  # 2,000 counted tokens + 256 output do not fit small's 2,048
    assert routed.route.passed_over["small"].endswith("context window is 2048")
    assert routed.route.tokens_counted == "estimated"  # large has no tokenizer here
    plain = AutoRouter(CATALOG).resolve_one("/v1/chat/completions", body)
    assert plain.model == "small"  # 250 estimated


def test_one_entry_point_routes_batches_realtime_and_the_cli_alike() -> None:
    router = AutoRouter(CATALOG, routes={"careful": {"min_quality": 0.8}})
    body = {"model": "careful", "messages": [{"role": "user", "content": "hi"}]}
    [batch] = router.resolve(
        "/v1/chat/completions",
        [Ask(7, body, "careful")],
        defaults={"task": "extraction"},  # a batch's metadata
    )
    assert isinstance(batch, Routed) and batch.model == "small"  # 0.85 for extraction
    assert batch.route.requested == "careful" and batch.route.task == "extraction"
    realtime = router.resolve_one("/v1/chat/completions", body, tier=Tier.REALTIME)
    assert realtime.model == "large" and "slackwater" not in realtime.body
    [bad] = router.resolve("/v1/chat/completions", [Ask(3, body, "nowhere")])
    assert isinstance(bad, list) and bad[0].line == 3 and bad[0].param == "body.model"
    with pytest.raises(InvalidRequest, match="no route named 'nowhere'"):
        router.resolve_one("/v1/chat/completions", {**body, "model": "nowhere"})


def test_a_lazy_counter_loads_once_and_falls_back_to_an_estimate() -> None:
    loads: list[int] = []

    def load() -> None:
        loads.append(1)

    count = lazy_counter(load)
    assert count("abcdefgh") == 2 and count("abcd") == 1
    assert loads == [1]


def test_a_chunks_routed_lines_are_predicted_in_one_call_and_keep_their_order() -> None:
    calls: list[list[str]] = []

    def predict(texts: Sequence[str]) -> list[dict[str, float]]:
        calls.append(list(texts))
        return [{"small": 0.9 if "easy" in t else 0.2} for t in texts]

    def ask(text: str) -> dict[str, object]:
        return {"model": "auto", "messages": [{"role": "user", "content": text}]}

    checker = check(
        ask("easy one"),
        {"model": "small"},
        ask("hard one"),
        {"model": "auto", "slackwater": {"min_quality": "x"}},  # bad: never predicted
        ask("easy two"),
        predict=predict,
        metadata={"slackwater.min_quality": "0.5"},
    )
    assert calls == [["easy one", "hard one", "easy two"]]
    rows = checker.rows  # type: ignore[attr-defined]
    assert [(r.line, r.model) for r in rows] == [
        (1, "small"),
        (2, "small"),
        (3, "large"),
        (5, "small"),
    ]
    assert [e.line for e in checker.errors] == [4]
    assert json.loads(rows[2].route)["predicted_quality"] == {"small": 0.2}
