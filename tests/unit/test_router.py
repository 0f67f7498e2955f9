"""The router on capability, context, feature, quality and price edge cases."""

from __future__ import annotations

from decimal import Decimal

import pytest

from slackwater.config import ModelConfig
from slackwater.domain.batch import Endpoint
from slackwater.domain.model import Model, Tier
from slackwater.policy.router import Constraints, Need, NoRoute, expected_cost, route


def model(
    name: str,
    out: str,
    *,
    context: int = 8192,
    features: tuple[str, ...] = (),
    quality: float | None = None,
    batch_out: str | None = None,
    endpoints: tuple[str, ...] = ("/v1/chat/completions",),
) -> Model:
    return ModelConfig(
        name=name,
        engine="fake",
        endpoints=list(endpoints),
        context_window=context,
        price={"input": out, "output": out},
        batch_price={"input": batch_out, "output": batch_out} if batch_out else None,
        features=list(features),
        quality={"default": quality} if quality is not None else {},
    ).to_model()


SMALL = model("small", "0.2", context=4096, quality=0.6)
MEDIUM = model("medium", "1.0", context=32768, features=("json_schema",), quality=0.75)
LARGE = model(
    "large", "10", context=128000, features=("json_schema", "tools"), quality=0.9, batch_out="5"
)
CHAT = Need(Endpoint.CHAT.value, prompt_tokens=1000, max_tokens=500)


def test_cheapest_capable_model_wins_and_the_others_are_explained() -> None:
    chosen = route([LARGE, MEDIUM, SMALL], CHAT)
    assert chosen.model == "small"
    assert chosen.expected_cost == Decimal("0.2") * 1500 / 1_000_000
    assert set(chosen.passed_over) == {"medium", "large"}
    assert "costs more" in chosen.passed_over["large"]


def test_context_window_counts_prompt_plus_max_tokens() -> None:
    fits = Need(Endpoint.CHAT.value, prompt_tokens=3596, max_tokens=500)  # exactly 4096
    assert route([SMALL, MEDIUM], fits).model == "small"
    over = Need(Endpoint.CHAT.value, prompt_tokens=3597, max_tokens=500)
    chosen = route([SMALL, MEDIUM], over)
    assert chosen.model == "medium"
    assert chosen.passed_over["small"] == "needs 4097 tokens, context window is 4096"


def test_features_endpoints_and_quality() -> None:
    tools = Need(Endpoint.CHAT.value, 100, 100, frozenset({"tools"}))
    assert route([SMALL, MEDIUM, LARGE], tools).model == "large"
    schema = Constraints(features=frozenset({"json_schema"}))
    assert route([SMALL, MEDIUM, LARGE], CHAT, schema).model == "medium"
    assert route([SMALL, MEDIUM, LARGE], CHAT, Constraints(min_quality=0.8)).model == "large"
    embed = model("embed", "0.01", endpoints=("/v1/embeddings",))
    chosen = route([embed, SMALL], CHAT)
    assert chosen.model == "small" and chosen.passed_over["embed"].startswith("does not serve")


def test_learned_predictions_override_catalog_scores() -> None:
    strict = Constraints(min_quality=0.7)
    assert route([SMALL, MEDIUM], CHAT, strict).model == "medium"
    # This prompt looks easy: the predictor says the small model will do.
    assert route([SMALL, MEDIUM], CHAT, strict, predicted={"small": 0.8}).model == "small"


def test_max_quality_drop_thresholds_the_gap_to_the_best_model() -> None:
    predicted = {"small": 0.70, "medium": 0.74, "large": 0.80}
    near = Constraints(max_quality_drop=0.1)
    assert route([SMALL, MEDIUM, LARGE], CHAT, near, predicted=predicted).model == "small"
    tight = route([SMALL, MEDIUM, LARGE], CHAT, Constraints(max_quality_drop=0.07), predicted)
    assert tight.model == "medium" and tight.ladder == ("medium", "large")
    assert (
        tight.passed_over["small"] == "predicted quality 0.70 is more than 0.07 under large's 0.80"
    )
    # The best is the best of the models that meet the other needs: with large over the
    # price limit, medium is the best and small is within 0.07 of it.
    cheap = Constraints(max_quality_drop=0.07, max_price=Decimal("2"))
    assert route([SMALL, MEDIUM, LARGE], CHAT, cheap, predicted).model == "small"
    unscored = model("unscored", "0.01")
    chosen = route([unscored, SMALL], CHAT, near)
    assert chosen.model == "small"
    assert chosen.passed_over["unscored"] == "has no quality score for this task"


def test_price_limits_and_tiers() -> None:
    assert route([MEDIUM, LARGE], CHAT, Constraints(max_price=Decimal("2"))).model == "medium"
    batch = Constraints(tier=Tier.BATCH, features=frozenset({"tools"}))
    assert expected_cost(LARGE, CHAT, Tier.BATCH) == expected_cost(LARGE, CHAT, Tier.REALTIME) / 2
    assert route([LARGE], CHAT, batch).expected_cost == Decimal("5") * 1500 / 1_000_000
    with pytest.raises(NoRoute) as refused:
        route([SMALL, LARGE], CHAT, Constraints(max_price=Decimal("1"), min_quality=0.7))
    message = refused.value.message
    assert "small predicted quality 0.60 is under 0.70" in message
    assert "large costs 5/M output tokens, over the limit of 1" in message
    assert refused.value.status_code == 400 and refused.value.code == "no_route"


def test_ties_go_to_the_better_model() -> None:
    twin = model("twin", "0.2", context=4096, quality=0.7)
    assert route([SMALL, twin], CHAT).model == "twin"
    with pytest.raises(NoRoute, match="no models configured"):
        route([], CHAT)


def test_context_is_checked_with_each_models_own_token_count() -> None:
    # Estimated at 3,000 tokens the prompt fits the small model (4,096); its own
    # tokenizer counts 4,000, which with 200 output tokens does not.
    need = Need(Endpoint.CHAT, 3000, max_tokens=200, model_tokens={"small": 4000})
    chosen = route([SMALL, MEDIUM], need)
    assert chosen.model == "medium"
    assert chosen.passed_over["small"] == "needs 4200 tokens, context window is 4096"
    assert expected_cost(SMALL, need, Tier.REALTIME) == Decimal("0.2") * 4200 / 1_000_000
