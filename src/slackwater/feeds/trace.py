"""Spot traces: the JSON format of the shared traces, loaded and replayed.

    {"metadata": {"gap_seconds": 195}, "data": [0, 1, 1, ...]}

`data` says per tick whether a spot instance could be had: 0 = it could (it was
available, or kept running), anything else = it could not (unavailable or preempted).
That is how the traces' own simulator reads them (skypilot-org's sky_spot, for "Can't
Be Late", NSDI'24: `spot_available = not trace[tick]`), whatever the upstream README's
"number of available instances" suggests. A price trace has the same shape with
`"unit": "usd_per_hour"` in its metadata and a price per tick in `data`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from slackwater.domain.errors import ConfigError
from slackwater.domain.pool import Trace
from slackwater.policy.simulate import SpotHistory
from slackwater.ports import PoolState


def _read(path: Path) -> tuple[float, list[Any], dict[str, Any]]:
    try:
        document = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"trace {path}: cannot be read ({exc.strerror})") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"trace {path}: not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"trace {path}: expected an object with metadata and data")
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        raise ConfigError(f"trace {path}: field metadata is missing or not an object")
    gap = metadata.get("gap_seconds")
    if not isinstance(gap, int | float) or isinstance(gap, bool) or gap <= 0:
        raise ConfigError(f"trace {path}: field metadata.gap_seconds must be a positive number")
    data = document.get("data")
    if not isinstance(data, list) or not data:
        raise ConfigError(f"trace {path}: field data must be a non-empty list")
    return float(gap), data, metadata


def _numbers(path: Path, data: list[Any]) -> list[Decimal]:
    out = []
    for i, value in enumerate(data):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"trace {path}: data[{i}] = {value!r} is not a number")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ConfigError(f"trace {path}: data[{i}] = {value!r} is not a number") from None
        if number < 0:
            raise ConfigError(f"trace {path}: data[{i}] = {value!r} is negative")
        out.append(number)
    return out


def load_trace(path: Path, prices: Path | None = None) -> Trace:
    """An availability trace, with a price trace resampled onto its ticks if given."""
    gap, data, _ = _read(path)
    capacity = [0 if n else 1 for n in _numbers(path, data)]
    spot_prices: list[Decimal] | None = None
    if prices is not None:
        price_gap, price_data, metadata = _read(prices)
        if metadata.get("unit", "usd_per_hour") != "usd_per_hour":
            raise ConfigError(f"trace {prices}: metadata.unit must be usd_per_hour")
        values = _numbers(prices, price_data)
        spot_prices = [
            values[min(len(values) - 1, int(t * gap // price_gap))] for t in range(len(capacity))
        ]
    return Trace(tick_seconds=gap, capacity=capacity, spot_prices=spot_prices, name=path.stem)


class TraceFeed:
    """Replays a trace from `start`, looping at its end: a spot pool for rehearsals."""

    def __init__(self, trace: Trace, start: datetime, price_per_hour: Decimal) -> None:
        self.trace = trace
        self.start = start
        self.price_per_hour = price_per_hour
        self.history = SpotHistory(trace)

    def tick(self, now: datetime) -> int:
        return int((now - self.start).total_seconds() // self.trace.tick_seconds) % len(self.trace)

    async def state(self, now: datetime) -> PoolState:
        t = self.tick(now)
        prices = self.trace.spot_prices
        return PoolState(
            available=self.trace.capacity[t] > 0,
            price_per_hour=prices[t] if prices is not None else self.price_per_hour,
            mean_uptime_seconds=self.history.mean_uptime(t),
        )
