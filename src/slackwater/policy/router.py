"""Router: the cheapest model that can do the job.

A model qualifies when it serves the endpoint, its context window holds the prompt plus
`max_tokens`, it has the features the request needs (JSON schema output, tools), its
price is within the caller's limit, and its predicted quality for this request (from a
learned predictor, else its evaluated score for the task) is at least the minimum asked
and, if asked, no more than `max_quality_drop` under the best qualifying model's.
Of those, the one with the lowest expected cost wins; ties go to the better model.
`route` returns the choice with the reasons every other model was passed over, so the
decision can be shown to the user. No I/O: token counts and predictions come in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from slackwater.domain.errors import InvalidRequest
from slackwater.domain.model import Model, Tier


class NoRoute(InvalidRequest):
    """No configured model meets the request's needs and constraints."""

    code = "no_route"


@dataclass(frozen=True)
class Need:
    """What the request itself requires."""

    endpoint: str
    prompt_tokens: int  # estimated, for models without a tokenizer at hand
    max_tokens: int = 0
    features: frozenset[str] = frozenset()
    # Counted with a model's own tokenizer, where it has one.
    model_tokens: Mapping[str, int] = field(default_factory=dict)

    def prompt_for(self, model: str) -> int:
        return self.model_tokens.get(model, self.prompt_tokens)


@dataclass(frozen=True)
class Constraints:
    """What the caller asks for (body extension field or batch metadata)."""

    task: str | None = None
    min_quality: float | None = None
    # How far under the best qualifying model's predicted quality a cheaper one may be:
    # a threshold on what the better model gains on this very request.
    max_quality_drop: float | None = None
    max_price: Decimal | None = None  # USD per million output tokens at the tier
    features: frozenset[str] = frozenset()
    tier: Tier = Tier.BATCH
    check_regex: str | None = None  # an answer that does not match escalates
    checks: tuple[str, ...] = ()  # user-registered checks the answer must pass


@dataclass(frozen=True)
class Route:
    model: str
    expected_cost: Decimal
    quality: float | None
    reason: str
    passed_over: dict[str, str] = field(default_factory=dict)
    ladder: tuple[str, ...] = ()  # every qualifying model, cheapest first: the cascade


def expected_cost(model: Model, need: Need, tier: Tier) -> Decimal:
    return model.price_for(tier).cost(need.prompt_for(model.name), need.max_tokens)


def _rejection(
    model: Model,
    need: Need,
    constraints: Constraints,
    quality: float | None,
) -> str | None:
    if not model.serves(need.endpoint):
        return f"does not serve {need.endpoint}"
    total = need.prompt_for(model.name) + need.max_tokens
    if model.context_window is not None and total > model.context_window:
        return f"needs {total} tokens, context window is {model.context_window}"
    missing = (need.features | constraints.features) - model.features
    if missing:
        return "lacks " + ", ".join(sorted(missing))
    price = model.price_for(constraints.tier).output
    if constraints.max_price is not None and price > constraints.max_price:
        return f"costs {price}/M output tokens, over the limit of {constraints.max_price}"
    if constraints.min_quality is not None:
        if quality is None:
            return _unscored(constraints)
        if quality < constraints.min_quality:
            return f"predicted quality {quality:.2f} is under {constraints.min_quality:.2f}"
    return None


def _unscored(constraints: Constraints) -> str:
    return f"has no quality score for {constraints.task or 'this task'}"


def _within_drop(
    candidates: list[tuple[Decimal, float, Model, float | None]],
    constraints: Constraints,
    passed_over: dict[str, str],
) -> list[tuple[Decimal, float, Model, float | None]]:
    drop = constraints.max_quality_drop
    assert drop is not None
    scored = [
        (quality, -cost, model.name)
        for cost, _, model, quality in candidates
        if quality is not None
    ]
    best = max(scored, default=None)
    kept = []
    for candidate in candidates:
        name, quality = candidate[2].name, candidate[3]
        if quality is None or best is None:
            passed_over[name] = _unscored(constraints)
        elif best[0] - quality > drop + 1e-9:  # a gap of exactly `drop` is allowed
            passed_over[name] = (
                f"predicted quality {quality:.2f} is more than {drop:.2f} under "
                f"{best[2]}'s {best[0]:.2f}"
            )
        else:
            kept.append(candidate)
    return kept


def route(
    models: Sequence[Model],
    need: Need,
    constraints: Constraints = Constraints(),
    predicted: Mapping[str, float] | None = None,
) -> Route:
    """The cheapest qualifying model; `predicted` overrides catalog quality per model."""
    candidates: list[tuple[Decimal, float, Model, float | None]] = []
    passed_over: dict[str, str] = {}
    for model in models:
        quality = (predicted or {}).get(model.name, model.quality_for(constraints.task))
        why = _rejection(model, need, constraints, quality)
        if why is not None:
            passed_over[model.name] = why
            continue
        cost = expected_cost(model, need, constraints.tier)
        candidates.append((cost, -(quality if quality is not None else 0.0), model, quality))
    if constraints.max_quality_drop is not None:
        candidates = _within_drop(candidates, constraints, passed_over)
    if not candidates:
        reasons = "; ".join(f"{name} {why}" for name, why in passed_over.items())
        raise NoRoute(f"no model can take this request: {reasons or 'no models configured'}")
    cost, _, chosen, quality = min(candidates, key=lambda c: (c[0], c[1], c[2].name))
    for _, _, other, _ in candidates:
        if other is not chosen:
            passed_over[other.name] = f"costs more ({expected_cost(other, need, constraints.tier)})"
    reason = f"cheapest of {len(candidates)} qualifying model(s)"
    if quality is not None:
        reason += f"; quality {quality:.2f}"
    ladder = tuple(c[2].name for c in sorted(candidates, key=lambda c: (c[0], c[1], c[2].name)))
    return Route(chosen.name, cost, quality, reason, passed_over, ladder)
