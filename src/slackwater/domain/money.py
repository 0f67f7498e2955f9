"""Money: US dollars as Decimal, stored as whole nanodollars so sums stay exact."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

NANO = Decimal("1e-9")


def to_nano(dollars: Decimal) -> int:
    return int(dollars.quantize(NANO, rounding=ROUND_HALF_EVEN).scaleb(9))


def from_nano(nanodollars: int) -> Decimal:
    return Decimal(nanodollars).scaleb(-9)
