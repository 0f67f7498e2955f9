"""Engines as Ray actors (`slackwater worker --ray auto|ADDRESS`): each actor holds one
loaded engine of a model, anywhere on the Ray cluster, and an engine call of the worker
runs on an idle actor. The queue, leases, retries and ledger stay the worker's: Ray only
places and runs the engine calls.

The pool of a model's actors grows while calls wait for an actor (the work leased is
more than the actors running it), up to `max_actors`, and idle actors above
`min_actors` retire after `idle_seconds`. An actor that dies mid-call (killed, its node
lost) takes no result with it: the call's requests run again on other actors, split in
halves down to single requests, so a request that kills its actor each time fails
alone and the others are answered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slackwater.domain.errors import ConfigError, InvalidRequest, SlackwaterError
from slackwater.domain.model import Model
from slackwater.domain.request import Outcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actors:
    """How a model's actors are sized and placed on the cluster."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    min_actors: int = 1
    max_actors: int = 1
    idle_seconds: float = 60.0
    # Custom resources each actor needs: a pool's node label (e.g. {"spot": 0.01}).
    resources: Mapping[str, float] = field(default_factory=dict)


def connect(address: str) -> None:
    """Join the Ray cluster at `address` ("auto": the one this machine belongs to; "local":
    start one in this process)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'slackwater[ray]'") from None
    if ray.is_initialized():
        return
    ray.init(
        address=None if address == "local" else address,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )


class _Lost(Exception):
    """The actor died running the call (killed, out of memory, its node gone)."""


def _actor_class() -> Any:
    import ray

    @ray.remote(max_restarts=0, max_task_retries=0)
    class EngineActor:
        """One loaded engine, in a Ray worker process."""

        def __init__(self, model: Model) -> None:
            from slackwater.engines import create_engine

            self.engine = create_engine(model)
            self.started = False

        async def run(self, endpoint: str, bodies: list[dict[str, Any]]) -> list[Outcome]:
            if not self.started:  # loading the model is the first call's
                await self.engine.start()
                self.started = True
            return await self.engine.run(endpoint, bodies)

        def pid(self) -> int:
            return os.getpid()

    return EngineActor


class RayEngine:
    """A model's engine as a pool of Ray actors (the Engine port)."""

    serial = False  # calls run side by side, one per actor

    def __init__(self, model: Model, actors: Actors) -> None:
        if actors.max_actors < max(actors.min_actors, 1):
            raise ConfigError(f"model {model.name}: ray.max_actors is under ray.min_actors")
        self.model = model
        self.actors = actors
        self.live: list[Any] = []  # actor handles
        self._idle: list[tuple[Any, float]] = []  # (actor, idle since)
        self._waiters = 0
        self._freed = asyncio.Condition()
        self._class: Any = None
        self.started_actors = 0  # ever, for tests and metrics
        self.lost_actors = 0

    async def start(self) -> None:
        self._class = _actor_class()
        for _ in range(self.actors.min_actors):
            self._idle.append((self._new_actor(), time.monotonic()))

    def _new_actor(self) -> Any:
        options: dict[str, Any] = {
            "num_cpus": self.actors.num_cpus,
            "num_gpus": self.actors.num_gpus,
        }
        if self.actors.resources:
            options["resources"] = dict(self.actors.resources)
        actor = self._class.options(**options).remote(self.model)
        self.live.append(actor)
        self.started_actors += 1
        return actor

    async def run(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        try:
            return await self._on_an_actor(endpoint, list(bodies))
        except _Lost:
            pass
        if len(bodies) > 1:
            half = len(bodies) // 2
            return [
                *await self.run(endpoint, bodies[:half]),
                *await self.run(endpoint, bodies[half:]),
            ]
        try:  # one request, once more: its first actor may have died of something else
            return await self._on_an_actor(endpoint, list(bodies))
        except _Lost:
            message = "the engine's process died running this request, twice"
            return [Outcome.error(502, message, code="engine_died")]

    async def _on_an_actor(self, endpoint: str, bodies: list[dict[str, Any]]) -> list[Outcome]:
        import ray.exceptions as errors

        actor = await self._take()
        try:
            outcomes: list[Outcome] = await actor.run.remote(endpoint, bodies)
        except errors.RayActorError:
            await self._drop(actor)
            log.warning("an actor of %s died mid-call; its requests run again", self.model.name)
            raise _Lost() from None
        except errors.RayTaskError as exc:  # the engine raised: as it would in process
            await self._give(actor)
            cause = exc.cause
            raise cause if isinstance(cause, Exception) else exc from None
        except BaseException:
            await self._give(actor)
            raise
        await self._give(actor)
        return outcomes

    async def _take(self) -> Any:
        async with self._freed:
            while True:
                self._retire_idle()
                if self._idle:
                    actor, _ = self._idle.pop()
                    return actor
                if len(self.live) < self.actors.max_actors:
                    return self._new_actor()  # calls are waiting: the pool grows
                self._waiters += 1
                try:
                    await self._freed.wait()
                finally:
                    self._waiters -= 1

    async def _give(self, actor: Any) -> None:
        async with self._freed:
            if actor in self.live:
                self._idle.append((actor, time.monotonic()))
            self._freed.notify()

    async def _drop(self, actor: Any) -> None:
        async with self._freed:
            if actor in self.live:
                self.live.remove(actor)
                self.lost_actors += 1
            self._freed.notify()  # the pool may grow in its place

    def _retire_idle(self) -> None:
        """Idle actors above the minimum go once idle for `idle_seconds`."""
        import ray

        now = time.monotonic()
        for actor, since in list(self._idle):
            if len(self.live) <= self.actors.min_actors:
                return
            if now - since >= self.actors.idle_seconds:
                self._idle.remove((actor, since))
                self.live.remove(actor)
                ray.kill(actor)

    async def close(self) -> None:
        import ray

        for actor in self.live:
            ray.kill(actor)
        self.live, self._idle = [], []


def _scorer_class() -> Any:
    class Scorer:
        """A Ray Data actor holding one classical model: predicts each chunk it is given."""

        def __init__(self, model: Model, key: str, skip: Any, work: Any) -> None:
            import ray

            from slackwater.engines import create_engine

            self.engine = create_engine(model)
            asyncio.run(self.engine.start())
            import pyarrow as pa

            self.key = key
            skipped = ray.get(skip) if isinstance(skip, ray.ObjectRef) else skip
            # Built once: a resumed job may leave out millions of keys.
            self.done = pa.array(list(skipped), pa.string()) if skipped else None
            self.work = work

        def __call__(self, batch: Any) -> Any:
            import pyarrow as pa
            import pyarrow.compute as pc

            started = time.perf_counter()
            left = batch
            if self.done is not None:
                left = batch.filter(pc.invert(pc.is_in(batch.column(self.key), self.done)))
            try:
                if left.num_rows:
                    part, values = self.work(self.engine, left)
                else:  # all done before: an empty part, shaped as the others by one row's
                    part, values = self.work(self.engine, batch.slice(0, 1))
                    part, values = part.slice(0, 0), []
            except SlackwaterError as exc:
                # Sent back as data: Ray Data keeps only its own words for a raised error.
                return pa.table({"_error": [exc.message]})
            seconds = time.perf_counter() - started
            rows = max(part.num_rows, 1)
            predicted = iter(v for _, v in values)  # rows with a key, in order
            keyed = [
                None if k is None else next(predicted) for k in part.column(self.key).to_pylist()
            ]
            part = part.append_column("_prediction", pa.array(keyed, pa.string()))
            return part.append_column("_seconds", pa.array([seconds / rows] * part.num_rows))

    return Scorer


class RayTableScorer:
    """Classical models over tables on Ray Data (the TableScorer port): the table is read
    by Ray's readers (local files on the node that runs the reader, or object stores),
    `map_batches` runs the chunks on a pool of actors holding the model (sized by the
    model's `[models.ray]`), and the parts stream back in the table's order."""

    def __init__(self, models: Mapping[str, tuple[Model, Actors]]) -> None:
        self.models = models

    def features(self, model: str) -> list[str] | None:
        options = self.models[model][0].options
        return [str(f) for f in options["features"]] if options.get("features") else None

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
        work: Any,
    ) -> Any:
        import pyarrow as pa
        import pyarrow.csv as pcsv
        import ray
        import ray.data

        from slackwater.domain.predictions import TableFormat
        from slackwater.ports import ScoredPart

        found, actors = self.models[model]
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # parts in the table's order
        arrow = {n: pa.float64() if t == "float64" else pa.string() for n, t in types.items()}
        if fmt == TableFormat.PARQUET.value:
            data = ray.data.read_parquet(location, columns=list(columns))
        else:
            data = ray.data.read_csv(
                location,
                convert_options=pcsv.ConvertOptions(
                    include_columns=list(columns), column_types=arrow
                ),
            )
        options: dict[str, Any] = {
            "fn_constructor_args": (found, key, ray.put(skip) if skip else frozenset(), work),
            "batch_size": chunk_rows,
            "batch_format": "pyarrow",
            "compute": ray.data.ActorPoolStrategy(
                min_size=max(actors.min_actors, 1), max_size=actors.max_actors
            ),
            "num_cpus": actors.num_cpus,
            "num_gpus": actors.num_gpus,
        }
        if actors.resources:
            options["resources"] = dict(actors.resources)
        scored = data.map_batches(_scorer_class(), **options)
        for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            part: Any = batch
            if "_error" in part.column_names:
                raise InvalidRequest(str(part.column("_error")[0]), param="dataset")
            if not part.num_rows:
                continue
            seconds = float(sum(part.column("_seconds").to_pylist()))
            keys = part.column(key).cast(pa.string()).to_pylist()
            values = [
                (str(k), v)
                for k, v in zip(keys, part.column("_prediction").to_pylist(), strict=True)
                if k is not None
            ]
            table = part.drop_columns(["_prediction", "_seconds"])
            yield ScoredPart(table, values, seconds)
