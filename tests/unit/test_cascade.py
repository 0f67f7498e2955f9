"""The cascade's decision: the next untried model up the ladder, or none at the top."""

from __future__ import annotations

from decimal import Decimal

from slackwater.domain.request import Usage
from slackwater.domain.route import Attempt, RouteRecord
from slackwater.policy.cascade import escalate

ROUTE = RouteRecord(
    requested="auto",
    model="cheap",
    reason="cheapest of 3 qualifying model(s)",
    expected_cost_usd="0.001",
    ladder=("cheap", "middle", "best"),
    check_regex="^yes|no$",
)


def test_a_failed_answer_moves_up_one_rung_and_is_remembered() -> None:
    up = escalate(ROUTE, "answer does not match", Decimal("0.002"), Usage(10, 3))
    assert up is not None and up.model == "middle"
    assert up.attempts == (Attempt("cheap", "answer does not match", "0.002", 10, 3),)
    assert up.reason == "escalated: cheap's answer failed a check (answer does not match)"
    assert up.check_regex == ROUTE.check_regex and up.ladder == ROUTE.ladder


def test_models_already_tried_are_skipped_and_the_best_answer_stands() -> None:
    tried = RouteRecord(
        **{**ROUTE.__dict__, "model": "cheap", "attempts": (Attempt("middle", "x", "0"),)}
    )
    up = escalate(tried, "empty answer", Decimal(0), Usage())
    assert up is not None and up.model == "best"
    assert escalate(up, "empty answer", Decimal(0), Usage()) is None
    off_ladder = RouteRecord(**{**ROUTE.__dict__, "model": "other"})
    assert escalate(off_ladder, "empty answer", Decimal(0), Usage()) is None


def test_the_record_survives_its_json_round_trip() -> None:
    up = escalate(ROUTE, "refusal", Decimal("0.5"), Usage(1, 2))
    assert up is not None
    assert RouteRecord.from_json(up.to_json()) == up
    data = up.to_dict()
    assert data["attempts"][0]["usage"] == {"prompt_tokens": 1, "completion_tokens": 2}
    assert "predicted_quality" not in data and data["check_regex"] == "^yes|no$"
