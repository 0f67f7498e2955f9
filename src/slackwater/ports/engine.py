"""The seams to engines, file contents, price feeds and time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
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


# What a cluster's actor does with each chunk of a table: predict it with the model it
# holds and give back the part to write (key, kept columns, outputs) and the predictions
# by key to keep (JSON). Runs in the actor's process; the runtime supplies it.
ScoreChunk = Callable[[ArrayPredictor, Any], tuple[Any, list[tuple[str, str]]]]


@dataclass(frozen=True)
class ScoredPart:
    """A chunk predicted on the cluster."""

    table: Any  # a pyarrow Table: the part of the output
    values: list[tuple[str, str]]  # (key, prediction as JSON)
    compute_seconds: float


class TableScorer(Protocol):
    """Runs a classical model over a whole table on a cluster (Ray Data): the table is
    read there, in chunks, by actors that hold the model, and the predicted parts come
    back in the table's order as they are done."""

    def features(self, model: str) -> list[str] | None:
        """The model's named features (its config's), without loading it here."""
        ...

    def score(
        self,
        model: str,
        location: str,
        fmt: str,
        columns: Sequence[str],
        types: Mapping[str, str],
        *,
        chunk_rows: int,
        key: str,
        skip: frozenset[str],
        work: ScoreChunk,
    ) -> Iterator[ScoredPart]:
        """Parts of the table at `location` (`columns` read, cast to `types`: "float64"
        or "string"), rows whose `key` is in `skip` left out."""
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
