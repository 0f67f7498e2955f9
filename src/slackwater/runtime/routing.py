"""Auto-routing at intake: a line asking for `"model": "auto"` (or a named route from
the config) gets the cheapest model that meets its needs and its caller's constraints.

Constraints come from the line's `slackwater` extension field, over the named route's,
over the batch's metadata (`slackwater.task`, `slackwater.min_quality`,
`slackwater.max_quality_drop`, `slackwater.max_price`, `slackwater.features` and
`slackwater.checks`, comma-separated).
The extension field is never sent to engines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from slackwater.domain.batch import Endpoint, LineError
from slackwater.domain.bodies import EXTENSION, as_chat, prompt_text, token_limit
from slackwater.domain.errors import InvalidRequest
from slackwater.domain.model import Catalog, Tier
from slackwater.domain.route import RouteRecord
from slackwater.domain.text import shown
from slackwater.policy.admission import CHARS_PER_TOKEN_AT_MOST
from slackwater.policy.quality import blended_quality
from slackwater.policy.router import Constraints, Need, NoRoute, route

AUTO = "auto"
KNOWN_FEATURES = frozenset({"json_schema", "tools"})


TokenCounter = Callable[[str], int]
# The learned router: prompts -> P(success) per model for each, in one call, so the
# embedding model runs on whole batches of prompts.
Predict = Callable[[Sequence[str]], Sequence[Mapping[str, float]]]


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def lazy_counter(load: Callable[[], TokenCounter | None]) -> TokenCounter:
    """A counter that loads its tokenizer on first use, estimating if there is none."""
    loaded: list[TokenCounter] = []

    def count(text: str) -> int:
        if not loaded:
            loaded.append(load() or estimate_tokens)
        return loaded[0](text)

    return count


@dataclass(frozen=True)
class Ask:
    """A body that names "auto" or a named route as its model, from line `line`."""

    line: int
    body: Mapping[str, Any]  # as the caller sent it, `slackwater` field included
    requested: str


@dataclass(frozen=True)
class Routed:
    model: str
    body: dict[str, Any]  # the body to run: the chosen model, no `slackwater` field
    route: RouteRecord


class AutoRouter:
    def __init__(
        self,
        catalog: Catalog,
        count_tokens: TokenCounter = estimate_tokens,
        default_max_tokens: int = 256,
        *,
        routes: Mapping[str, Mapping[str, Any]] | None = None,
        checks: frozenset[str] = frozenset(),
        counters: Mapping[str, TokenCounter] | None = None,
        predict: Predict | None = None,
    ) -> None:
        self.catalog = catalog
        self.count_tokens = count_tokens
        self.counters = dict(counters or {})  # model -> its own tokenizer
        # Past this many characters no model's context holds a prompt: a tokenizer is
        # shown no more of one (a huge prompt would cost seconds to count in full).
        windows = [m.context_window for m in catalog.models]
        self.counted_chars = (
            None
            if not windows or None in windows
            else (max(w for w in windows if w is not None) + 1) * CHARS_PER_TOKEN_AT_MOST
        )
        self.predict = predict
        self.default_max_tokens = default_max_tokens
        self.routes = {AUTO: {}, **(routes or {})}
        self.known_checks = checks

    def named(self, model: str) -> Mapping[str, Any] | None:
        """The constraints of a named route (or "auto"); None for a model name."""
        return self.routes.get(model)

    def defaults(self, metadata: Mapping[str, str] | None) -> dict[str, Any]:
        """Batch-level constraints from metadata keys `slackwater.<name>`."""
        found: dict[str, Any] = {}
        for key, value in (metadata or {}).items():
            if key.startswith(f"{EXTENSION}."):
                name = key.split(".", 1)[1]
                found[name] = value.split(",") if name in ("features", "checks") else value
        return found

    def constraints(
        self, given: Any, defaults: Mapping[str, Any], line: int, tier: Tier = Tier.BATCH
    ) -> Constraints | list[LineError]:
        fields = {**defaults, **(given if isinstance(given, dict) else {})}
        errors: list[LineError] = []
        if given is not None and not isinstance(given, dict):
            errors.append(_error(line, "body.slackwater", "must be an object"))

        def number(name: str, low: Decimal, high: Decimal | None) -> Decimal | None:
            if fields.get(name) is None:
                return None
            try:
                value = Decimal(str(fields[name]))
            except InvalidOperation:
                errors.append(_error(line, f"body.slackwater.{name}", "must be a number"))
                return None
            if value < low or (high is not None and value > high):
                span = f"between {low} and {high}" if high is not None else f"at least {low}"
                errors.append(_error(line, f"body.slackwater.{name}", f"must be {span}"))
            return value

        min_quality = number("min_quality", Decimal(0), Decimal(1))
        max_quality_drop = number("max_quality_drop", Decimal(0), Decimal(1))
        max_price = number("max_price", Decimal(0), None)
        task = fields.get("task")
        if task is not None and not isinstance(task, str):
            errors.append(_error(line, "body.slackwater.task", "must be a string"))
        features = fields.get("features") or []
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            errors.append(_error(line, "body.slackwater.features", "must be a list of strings"))
            features = []
        unknown = set(features) - KNOWN_FEATURES
        if unknown:
            errors.append(
                _error(
                    line,
                    "body.slackwater.features",
                    f"unknown features {sorted(unknown)}; known: {sorted(KNOWN_FEATURES)}",
                )
            )
        checks = fields.get("checks") or []
        if isinstance(checks, str):
            checks = checks.split(",")
        if not isinstance(checks, list) or not all(isinstance(c, str) for c in checks):
            errors.append(_error(line, "body.slackwater.checks", "must be a list of strings"))
            checks = []
        missing = sorted(set(checks) - self.known_checks)
        if missing:
            known = sorted(self.known_checks) or "none registered"
            errors.append(
                _error(line, "body.slackwater.checks", f"unknown checks {missing}; known: {known}")
            )
        regex = fields.get("check_regex")
        if regex is not None:
            try:
                re.compile(regex)
            except (re.error, TypeError) as exc:
                errors.append(_error(line, "body.slackwater.check_regex", f"is not a regex: {exc}"))
        if errors:
            return errors
        return Constraints(
            check_regex=regex,
            checks=tuple(checks),
            task=task,
            min_quality=float(min_quality) if min_quality is not None else None,
            max_quality_drop=float(max_quality_drop) if max_quality_drop is not None else None,
            max_price=max_price,
            features=frozenset(features),
            tier=tier,
        )

    def learned_quality(
        self, task: str | None, outcomes: Mapping[tuple[str, str], tuple[int, int]]
    ) -> dict[str, float]:
        """Catalog scores updated by the check results seen so far for this task."""
        found = {}
        for model in self.catalog.models:
            passed, failed = outcomes.get((model.name, task or ""), (0, 0))
            if passed or failed:
                quality = blended_quality(model.quality_for(task), passed, failed)
                if quality is not None:
                    found[model.name] = quality
        return found

    def predictions(self, bodies: Sequence[Mapping[str, Any]]) -> list[Mapping[str, float]]:
        """The learned router's P(success) per model for each body's prompt ({} each
        without a learned router)."""
        if self.predict is None:
            return [{} for _ in bodies]
        return list(self.predict([prompt_text(body, roles=False) for body in bodies]))

    def resolve(
        self,
        endpoint: str,
        asks: Sequence[Ask],
        *,
        defaults: Mapping[str, Any] | None = None,
        outcomes: Mapping[tuple[str, str], tuple[int, int]] | None = None,
        tier: Tier = Tier.BATCH,
    ) -> list[Routed | list[LineError]]:
        """Route each ask (a body naming "auto" or a named route) to its model: the one
        place where a route's constraints are gathered and a model chosen.

        Constraints: the body's `slackwater` field, over the named route's, over
        `defaults` (a batch's metadata). The learned router sees every prompt in one
        call, so its embedding model runs on full batches."""
        found: list[Routed | list[LineError] | None] = []
        asking: list[tuple[int, Ask, dict[str, Any], Constraints]] = []
        for ask in asks:
            named = self.named(ask.requested)
            body = dict(ask.body)
            given = body.pop(EXTENSION, None)  # slackwater's own field never reaches an engine
            if named is None:
                found.append(
                    [_error(ask.line, "body.model", f"no route named {shown(ask.requested)!r}")]
                )
                continue
            constraints = self.constraints(given, {**(defaults or {}), **named}, ask.line, tier)
            if isinstance(constraints, list):
                found.append(constraints)
                continue
            asking.append((len(found), ask, body, constraints))
            found.append(None)
        predictions = self.predictions([as_chat(endpoint, body) for _, _, body, _ in asking])
        for (slot, ask, body, constraints), predicted in zip(asking, predictions, strict=True):
            found[slot] = self._choose(endpoint, ask, body, constraints, outcomes or {}, predicted)
        return [item for item in found if item is not None]

    def resolve_one(
        self, endpoint: str, body: Mapping[str, Any], *, tier: Tier = Tier.BATCH
    ) -> Routed:
        """`resolve` for one body; what is wrong with it is raised as InvalidRequest."""
        [routed] = self.resolve(endpoint, [Ask(0, body, str(body.get("model")))], tier=tier)
        if isinstance(routed, list):
            first = routed[0]
            raise InvalidRequest(first.message, param=first.param, code=first.code)
        return routed

    def _choose(
        self,
        endpoint: str,
        ask: Ask,
        body: dict[str, Any],
        constraints: Constraints,
        outcomes: Mapping[tuple[str, str], tuple[int, int]],
        predicted: Mapping[str, float],
    ) -> Routed | list[LineError]:
        needs = set()
        chat = as_chat(endpoint, body)
        response_format = chat.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            needs.add("json_schema")
        if chat.get("tools"):
            needs.add("tools")
        limit = token_limit(chat)
        text = prompt_text(chat)
        sample = text[: self.counted_chars] if self.counted_chars else text
        counted = {
            model.name: self.counters[model.name](sample)
            for model in self.catalog.models
            if model.name in self.counters and model.serves(endpoint)
        }
        need = Need(
            endpoint=endpoint,
            prompt_tokens=self.count_tokens(text),
            model_tokens=counted,
            max_tokens=0
            if endpoint == Endpoint.EMBEDDINGS
            else int(limit or self.default_max_tokens),
            features=frozenset(needs),
        )
        try:
            learned = self.learned_quality(constraints.task, outcomes)
            chosen = route(self.catalog.models, need, constraints, {**learned, **predicted})
        except NoRoute as exc:
            return [
                LineError(code=exc.code, message=exc.message, line=ask.line, param="body.model")
            ]
        record = RouteRecord(
            requested=ask.requested,
            model=chosen.model,
            reason=chosen.reason,
            expected_cost_usd=str(chosen.expected_cost),
            passed_over=chosen.passed_over,
            ladder=chosen.ladder,
            task=constraints.task,
            prompt_tokens=need.prompt_for(chosen.model),
            tokens_counted="tokenizer" if chosen.model in counted else "estimated",
            predicted_quality={m: round(p, 3) for m, p in predicted.items()},
            check_regex=constraints.check_regex,
            checks=constraints.checks,
        )
        return Routed(chosen.model, {**body, "model": chosen.model}, record)


def _error(line: int, param: str, message: str) -> LineError:
    return LineError(code="invalid_value", message=f"{param} {message}", line=line, param=param)
