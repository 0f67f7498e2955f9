"""Model: a named model offering, the engine that runs it and its limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from slackwater.domain.batch import Endpoint, LineError
from slackwater.domain.text import shown


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: Decimal = Decimal(0)
    output: Decimal = Decimal(0)

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        """US dollars for that many tokens."""
        return (self.input * input_tokens + self.output * output_tokens) / 1_000_000


class Tier(StrEnum):
    """How long a caller can wait: the price of a model depends on it."""

    REALTIME = "realtime"
    BATCH = "batch"


@dataclass(frozen=True)
class Model:
    name: str
    engine: str
    endpoints: frozenset[Endpoint]
    options: dict[str, Any] = field(default_factory=dict)
    max_batch_size: int = 32
    context_window: int | None = None
    aliases: tuple[str, ...] = ()
    price: Price = Price()  # realtime
    batch_price: Price | None = None  # the batch tier's; the realtime price when unset
    features: frozenset[str] = frozenset()  # e.g. json_schema, tools
    quality: dict[str, float] = field(default_factory=dict)  # task category -> 0..1
    owned_by: str = "slackwater"
    # Service tier -> its price where the model is billed by the token (a provider's flex
    # tier, say); a tier not named here is billed at `price`.
    tier_prices: dict[str, Price] = field(default_factory=dict)
    batch_venue: str | None = None  # a provider batch model that can run its requests

    def price_on(self, service_tier: str) -> Price:
        """What a realtime API bills a call on the service tier (its own price, if the
        model has one for that tier)."""
        return self.tier_prices.get(service_tier, self.price)

    def price_for(self, tier: Tier) -> Price:
        if tier is Tier.REALTIME or self.batch_price is None:
            return self.price
        return self.batch_price

    def quality_for(self, task: str | None) -> float | None:
        """The evaluated quality for a task category, else the model's default."""
        if task is not None and task in self.quality:
            return self.quality[task]
        return self.quality.get("default")

    def serves(self, endpoint: str) -> bool:
        if endpoint == Endpoint.RESPONSES:  # answered by chat completions
            return Endpoint.CHAT in self.endpoints
        return endpoint in self.endpoints  # Endpoint is a str enum: plain strings match


class Catalog:
    """The configured models, looked up by name or alias."""

    def __init__(self, models: list[Model]) -> None:
        self.models = list(models)
        self._by_name: dict[str, Model] = {}
        for model in self.models:
            for name in (model.name, *model.aliases):
                self._by_name[name] = model

    def find(self, name: str) -> Model | None:
        return self._by_name.get(name)

    def serving(self, name: str, endpoint: str, *, line: int | None = None) -> Model | LineError:
        """The model called `name` if it serves `endpoint`; else why not."""
        model = self.find(name)
        if model is None:
            return LineError(
                "model_not_found",
                f"model {shown(name)!r} does not exist; see GET /v1/models",
                line=line,
                param="body.model",
            )
        if not model.serves(endpoint):
            return LineError(
                "model_not_supported",
                f"model {shown(name)!r} does not serve {endpoint}",
                line=line,
                param="body.model",
            )
        return model

    def names(self) -> list[str]:
        return [m.name for m in self.models]
