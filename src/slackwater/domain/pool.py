"""Pool: capacity an engine runs on, with its price and whether it can be taken away."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class PoolKind(StrEnum):
    LOCAL = "local"  # this machine: already paid for
    SPOT = "spot"  # cheap, preemptible instances, $/hour
    ON_DEMAND = "on_demand"  # always there, $/hour
    PROVIDER_REALTIME = "provider_realtime"  # an OpenAI-compatible endpoint, $/token
    PROVIDER_BATCH = "provider_batch"  # a provider's batch API, $/token, answers within hours


HOURLY = frozenset({PoolKind.LOCAL, PoolKind.SPOT, PoolKind.ON_DEMAND})


@dataclass(frozen=True)
class Pool:
    name: str
    kind: PoolKind
    price_per_hour: Decimal = Decimal(0)  # instance pools; token pools use the model's price
    # Where availability and price come from: "static", "trace:PATH" or a plug-in feed.
    feed: str = "static"
    models: frozenset[str] = frozenset()  # the models it serves; empty: all
    turnaround_seconds: float = 86_400.0  # a provider pool as a batch venue: its window

    @property
    def hourly(self) -> bool:
        return self.kind in HOURLY

    def serves(self, model: str) -> bool:
        return not self.models or model in self.models


@dataclass(frozen=True)
class Trace:
    """Spot capacity (and optionally price) per tick, as in the shared spot traces."""

    tick_seconds: float
    capacity: Sequence[int]  # spot instances to be had per tick (0: none)
    spot_prices: Sequence[Decimal] | None = None  # $/hour per tick; None: a fixed price
    name: str = "trace"

    def __len__(self) -> int:
        return len(self.capacity)
