"""What each request cost where it ran, and what it would have cost in real time.

An instance pool (local, spot, on-demand) bills by the hour: the seconds an engine call
took are shared among its requests by their tokens. A provider pool bills by the token
at the model's price for that tier. The realtime reference is always the same tokens at
the model's realtime price.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import Decimal

from slackwater.domain.model import Model, Price, Tier
from slackwater.domain.money import NANO
from slackwater.domain.pool import Pool, PoolKind
from slackwater.domain.request import Charge, Outcome

HOUR = Decimal(3600)


class Occupancy:
    """An engine's time shared among the calls it runs side by side (vLLM batching
    several chunks at once): while n calls are in flight each is charged 1/n of every
    second, so the calls' seconds add up to the time the engine was busy, not n times
    it. Times are passed in (monotonic seconds)."""

    def __init__(self) -> None:
        self._calls: dict[int, float] = {}
        self._last = 0.0
        self._tokens = itertools.count()

    def _advance(self, now: float) -> None:
        if self._calls:
            each = (now - self._last) / len(self._calls)
            for token in self._calls:
                self._calls[token] += each
        self._last = now

    def start(self, now: float) -> int:
        self._advance(now)
        token = next(self._tokens)
        self._calls[token] = 0.0
        return token

    def end(self, token: int, now: float) -> float:
        """The seconds of the engine's time the call took."""
        self._advance(now)
        return self._calls.pop(token)


def billed_price(model: Model, pool: Pool, tier: str) -> Price:
    """The token price a provider's pool bills a request of `model` asked on `tier`: a
    batch tier its batch price; an endpoint its price on that tier, or on the one its
    engine always asks (the http engine's `service_tier`), a batch's requests included."""
    if pool.kind is PoolKind.PROVIDER_BATCH:
        return model.price_for(Tier.BATCH)
    return model.price_on(str(model.options.get("service_tier") or tier))


def charges(
    model: Model,
    pool: Pool,
    outcomes: Sequence[Outcome],
    seconds: float,
    tiers: Sequence[str] | None = None,
) -> list[Charge]:
    """One charge per outcome of an engine call that took `seconds` on `pool`. `tiers`:
    the service tier each was asked on, which a provider's realtime pool bills at that
    tier's price (None: the realtime price)."""
    tokens = [o.usage.total_tokens for o in outcomes]
    total = sum(tokens)
    realtime_price = model.price
    if tiers is not None and not pool.hourly:
        prices = [billed_price(model, pool, tier) for tier in tiers]
    elif pool.kind is PoolKind.PROVIDER_BATCH:
        prices = [billed_price(model, pool, Tier.BATCH)] * len(outcomes)
    else:
        prices = [model.price] * len(outcomes)
    hourly = f"${pool.price_per_hour}/hour"  # hoisted: a worker prices every request it runs
    out = []
    for outcome, used, price in zip(outcomes, tokens, prices, strict=True):
        share = used / total if total else 1 / len(outcomes)
        spent = seconds * share
        usage = outcome.usage
        realtime = realtime_price.cost(usage.prompt_tokens, usage.completion_tokens)
        if pool.hourly:
            cost = pool.price_per_hour * Decimal(repr(spent)) / HOUR
            rate = hourly
        else:
            cost = price.cost(usage.prompt_tokens, usage.completion_tokens)
            rate = f"${price.input}/${price.output} per M tokens"
        out.append(
            Charge(
                pool.name,
                spent,
                cost.quantize(NANO),
                realtime.quantize(NANO),
                engine=model.engine,
                price=rate,
            )
        )
    return out


def reused(model: Model, pool: Pool, outcome: Outcome) -> Charge:
    """A result served from the cache (or a twin in the same chunk): no compute spent."""
    usage = outcome.usage
    realtime = model.price.cost(usage.prompt_tokens, usage.completion_tokens)
    return Charge(
        pool.name, 0.0, Decimal(0), realtime.quantize(NANO), engine=model.engine, price="reused"
    )
