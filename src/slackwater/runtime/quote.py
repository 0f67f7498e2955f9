"""Quote: what a batch file would cost, per model and tier, before anything runs.

Lines are validated as intake would (bad lines are reported, not priced), prompt tokens
are counted with each model's own tokenizer where one is available (else estimated at
four characters a token, and said so), and output tokens are each request's
`max_tokens`, or `default_max_tokens` where it sets none: an upper bound.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from slackwater.domain.batch import LineError
from slackwater.domain.bodies import prompt_text
from slackwater.domain.model import Catalog, Model, Tier
from slackwater.runtime.offline import endpoint_of
from slackwater.runtime.routing import TokenCounter, estimate_tokens
from slackwater.runtime.validation import LineChecker


@dataclass
class ModelQuote:
    model: str
    requests: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    cost: dict[str, Decimal] = field(default_factory=dict)  # tier -> USD


@dataclass
class Quote:
    endpoint: str
    models: list[ModelQuote]
    errors: list[LineError]
    error_lines: int


def quote_file(
    path: Path,
    catalog: Catalog,
    counters: Mapping[str, TokenCounter],
    *,
    default_max_tokens: int = 256,
) -> Quote:
    endpoint = endpoint_of(path)
    checker = LineChecker(endpoint, catalog, cache=False)
    quotes: dict[str, ModelQuote] = {}
    with path.open("rb") as handle:
        line, done = 1, False
        while not done:
            rows, line, done = checker.read_chunk(handle, line, 5000)
            for row in rows:
                body = json.loads(row.body)
                model = catalog.find(row.model)
                assert model is not None
                entry = quotes.setdefault(model.name, ModelQuote(model.name))
                count = counters.get(model.name)
                entry.estimated |= count is None
                entry.requests += 1
                entry.prompt_tokens += (count or estimate_tokens)(prompt_text(body))
                limit = body.get("max_completion_tokens") or body.get("max_tokens")
                if endpoint != "/v1/embeddings":
                    entry.output_tokens += int(limit or default_max_tokens)
    for entry in quotes.values():
        model = catalog.find(entry.model)
        assert model is not None
        entry.cost = {tier.value: _cost(model, entry, tier) for tier in (Tier.REALTIME, Tier.BATCH)}
    return Quote(endpoint, list(quotes.values()), checker.errors, checker.error_lines)


def _cost(model: Model, entry: ModelQuote, tier: Tier) -> Decimal:
    return model.price_for(tier).cost(entry.prompt_tokens, entry.output_tokens)


def by_model(quote: Quote) -> dict[str, dict[str, Any]]:
    """The quote as plain JSON-ready data."""
    result: dict[str, dict[str, Any]] = defaultdict(dict)
    for entry in quote.models:
        result[entry.model] = {
            "requests": entry.requests,
            "prompt_tokens": entry.prompt_tokens,
            "max_output_tokens": entry.output_tokens,
            "tokens_estimated": entry.estimated,
            "cost_usd": {tier: str(cost) for tier, cost in entry.cost.items()},
        }
    return dict(result)
