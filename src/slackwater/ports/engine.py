"""The seams to engines, file contents, price feeds and time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import IO, Any, Protocol, runtime_checkable

from slackwater.domain.model import Model
from slackwater.domain.request import Outcome

Clock = Callable[[], datetime]


class Engine(Protocol):
    """Runs a list of request bodies on one model. One instance per Model."""

    model: Model
    # Runs one call at a time (a local model on one device): calls queue for it, so
    # batch steps are let in one by one and a realtime call goes ahead of the queue.
    serial: bool

    async def start(self) -> None: ...
    async def run(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]: ...
    async def close(self) -> None: ...


@runtime_checkable
class ArrayPredictor(Protocol):
    """An engine that predicts over a whole array of rows (a classical model): what a
    dataset job runs, without JSON between the table and the model."""

    features: list[str] | None  # the columns a row has, in order (None: not named)

    def predict_array(self, output: str, rows: Any) -> tuple[Any, list[Any] | None]:
        """Rows (a 2-D numpy array) -> (one output per row, class labels for
        predict_proba); ValueError naming what is wrong with the rows. Blocking."""
        ...


# Awaited by a stepping engine between steps with the answer's text so far: a stream
# sends it on, and another tenant's call may take the model then (runtime/turns.py).
Between = Callable[[str], Awaitable[None]]


class SteppingEngine(Engine, Protocol):
    """An engine that can run one request in steps (optional)."""

    async def run_in_steps(
        self, endpoint: str, body: dict[str, Any], between: Between
    ) -> Outcome: ...


class BlobStore(Protocol):
    """Where file contents live: written once through a temp file, read as streams."""

    def writer(self, key: str) -> AbstractContextManager[IO[bytes]]: ...
    def open(self, key: str) -> IO[bytes]: ...
    def path(self, key: str) -> str: ...
    async def delete(self, key: str) -> None: ...
    async def size(self, key: str) -> int: ...


@dataclass(frozen=True)
class PoolState:
    """What a pool offers now, as its feed sees it."""

    available: bool
    price_per_hour: Decimal
    mean_uptime_seconds: float | None = None  # of recent spot runs, where known


class PriceFeed(Protocol):
    async def state(self, now: datetime) -> PoolState: ...
