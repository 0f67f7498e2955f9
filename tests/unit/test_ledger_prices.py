"""What the ledger charges: compute time on instance pools, the tier's price by the
token on providers' pools."""

from __future__ import annotations

from decimal import Decimal

from slackwater.domain.batch import Endpoint
from slackwater.domain.model import Model, Price
from slackwater.domain.pool import Pool, PoolKind
from slackwater.domain.request import Outcome, Usage
from slackwater.policy.ledger import charges

MODEL = Model(
    "m",
    "http",
    frozenset({Endpoint.CHAT}),
    price=Price(Decimal("2"), Decimal("8")),
    batch_price=Price(Decimal("1"), Decimal("4")),
    tier_prices={"flex": Price(Decimal("1"), Decimal("4"))},
)
MILLION = [Outcome(200, {}, Usage(1_000_000, 1_000_000))] * 3


def test_a_providers_realtime_pool_bills_the_tier_asked_for() -> None:
    pool = Pool("openai", PoolKind.PROVIDER_REALTIME)
    billed = charges(MODEL, pool, MILLION, 3.0, ["flex", "default", "batch"])
    assert [c.cost for c in billed] == [Decimal(5), Decimal(10), Decimal(10)]
    assert all(c.realtime_cost == Decimal(10) for c in billed)
    assert billed[0].price == "$1/$4 per M tokens"
    assert [c.cost for c in charges(MODEL, pool, MILLION, 3.0)] == [Decimal(10)] * 3


def test_a_providers_batch_pool_bills_its_batch_price_whatever_the_tier() -> None:
    pool = Pool("openai-batch", PoolKind.PROVIDER_BATCH)
    billed = charges(MODEL, pool, MILLION, 3.0, ["flex", "default", "batch"])
    assert [c.cost for c in billed] == [Decimal(5)] * 3


def test_an_instance_pool_bills_its_time_whatever_the_tier() -> None:
    pool = Pool("spot", PoolKind.SPOT, price_per_hour=Decimal("3.6"))
    billed = charges(MODEL, pool, MILLION, 3.0, ["flex", "default", "batch"])
    assert [c.cost for c in billed] == [Decimal("0.001")] * 3  # a second each at $3.6/h
    assert billed[0].price == "$3.6/hour" and billed[0].compute_seconds == 1.0


def test_calls_side_by_side_share_the_engines_time() -> None:
    from slackwater.policy.ledger import Occupancy

    engine = Occupancy()
    a = engine.start(0.0)
    b = engine.start(2.0)  # a alone for 2 s, then both for 4 s
    assert engine.end(a, 6.0) == 2.0 + 4.0 / 2
    assert engine.end(b, 9.0) == 4.0 / 2 + 3.0  # then b alone for 3 s
    c = engine.start(20.0)  # idle time is nobody's
    assert engine.end(c, 21.0) == 1.0
