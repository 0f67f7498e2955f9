"""Wiring: the one place that picks concrete stores and engines for a Settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from slackwater.config import TINY_MODEL, VENUE_KINDS, ModelConfig, Settings
from slackwater.domain.batch import Endpoint
from slackwater.domain.clock import utcnow
from slackwater.domain.errors import ConfigError
from slackwater.domain.model import Catalog, Model, Tier
from slackwater.domain.pool import Pool, PoolKind, Trace
from slackwater.engines import create_engine
from slackwater.engines.tiny_llama import build_tiny_llama
from slackwater.engines.transformers import (
    TransformersEngine,
    embed_texts,
    native_bfloat16,
    resolve_path,
    token_counter,
)
from slackwater.feeds import open_feed
from slackwater.feeds.trace import load_trace
from slackwater.policy.ledger import billed_price
from slackwater.policy.planner import SlackReserve
from slackwater.policy.retry import RetryPolicy
from slackwater.ports import BlobStore, Clock, Engine, Store, TableScorer
from slackwater.runtime.admission import Admission
from slackwater.runtime.batches import BatchService
from slackwater.runtime.call_ledger import CallLedger
from slackwater.runtime.calls import CallQueue
from slackwater.runtime.datasets import DatasetRunner
from slackwater.runtime.endpoints import WebhookEndpoints
from slackwater.runtime.engines import EngineSet
from slackwater.runtime.files import FileService, UploadPace
from slackwater.runtime.finalizer import Finalizer
from slackwater.runtime.intake import Intake
from slackwater.runtime.keys import KeyService
from slackwater.runtime.learned import Embed, LearnedQuality, check_router, load_router
from slackwater.runtime.message_batches import MessageBatches
from slackwater.runtime.metrics import Metrics
from slackwater.runtime.monitor import Monitor
from slackwater.runtime.placement import Placement, Venue
from slackwater.runtime.plugins import load_agents, load_checks
from slackwater.runtime.prices import PriceRecorder
from slackwater.runtime.realtime import Realtime
from slackwater.runtime.responses import ResponseService
from slackwater.runtime.routing import AutoRouter, TokenCounter, lazy_counter
from slackwater.runtime.schedules import Scheduler
from slackwater.runtime.services import Services
from slackwater.runtime.sessions import SessionRunner
from slackwater.runtime.webhooks import WebhookSender
from slackwater.runtime.worker import Worker
from slackwater.store.blobs import LocalBlobStore
from slackwater.store.sql import SqlStore

if TYPE_CHECKING:  # Ray is an extra: imported only where a Ray engine is built
    from slackwater.engines.ray import Actors


def build(
    settings: Settings,
    *,
    monitor: bool = True,
    workers: int | None = None,
    worker_models: list[str] | None = None,
    clock: Clock = utcnow,
    ray: bool = False,
) -> Services:
    """Everything one process runs. `workers` defaults to one when the settings say the
    server runs its own worker, else none. `ray`: engines run as actors on the Ray
    cluster this process has joined (`ray_engine`)."""
    store = open_store(settings)
    blobs = LocalBlobStore(settings.data_dir / "files")
    catalog = Catalog(settings.catalog())

    def engine_for(model: Model) -> Engine:
        if ray:
            return ray_engine(settings, model)
        return create_engine(placed(model, settings))

    engines = EngineSet(
        catalog,
        engine_for,
        realtime_calls_per_project=settings.max_realtime_calls_per_project,
    )
    cache_ttl = (
        timedelta(seconds=settings.cache_ttl_seconds) if settings.cache_ttl_seconds else None
    )
    checks = load_checks(settings.checks)
    counters = tokenizers(settings, catalog)
    router = router_for(settings, catalog, frozenset(checks), counters)
    admission = Admission(catalog, counters)
    intake = Intake(
        store,
        blobs,
        catalog,
        clock,
        chunk=settings.ingest_chunk,
        child_lines=settings.ingest_child_lines,
        cache=cache_ttl is not None,
        router=router,
        admission=admission,
    )
    retry_policy = RetryPolicy(
        max_attempts=settings.max_attempts,
        base_seconds=settings.retry_base_seconds,
        max_seconds=settings.retry_max_seconds,
    )
    files = FileService(
        store,
        blobs,
        clock,
        max_bytes=settings.max_file_bytes,
        max_lines=settings.max_file_lines,
        max_stored_bytes=settings.max_stored_bytes_per_project,
        pace=UploadPace(
            idle_seconds=settings.upload_idle_seconds,
            min_bytes_per_second=settings.upload_min_bytes_per_second,
            grace_seconds=settings.upload_grace_seconds,
            max_concurrent_per_project=settings.max_concurrent_uploads_per_project,
        ),
    )
    finalizer = Finalizer(store, files, clock)
    batches = BatchService(
        store, clock, files, max_queued_requests=settings.max_queued_requests_per_project
    )
    metrics = Metrics()
    pool = settings.pool_named()
    placement = _placement(settings, store, pool, clock)
    count = workers if workers is not None else int(settings.run_worker_in_server)
    venues = [
        p.to_pool()
        for p in settings.pools
        if p.kind in (PoolKind.PROVIDER_BATCH, PoolKind.PROVIDER_REALTIME)
    ]
    call_ledger = CallLedger(
        store,
        clock,
        pool,
        venues={m: v for v in venues if v.kind is PoolKind.PROVIDER_REALTIME for m in v.models},
    )
    engines.on_answered = call_ledger.add
    realtime = Realtime(catalog, router, admission)
    tiers = settings.tiers()
    datasets = DatasetRunner(
        store,
        engines,
        blobs,
        clock,
        lease_seconds=settings.lease_seconds,
        price_per_hour=pool.price_per_hour,
        placement=placement,
        scorer=ray_scorer(settings, catalog) if ray else None,
    )
    calls = CallQueue(store, clock, poll_seconds=settings.call_poll_seconds)
    return Services(
        store=store,
        blobs=blobs,
        catalog=catalog,
        clock=clock,
        engines=engines,
        router=router,
        admission=admission,
        realtime=realtime,
        calls=calls,
        call_ledger=call_ledger,
        responses=ResponseService(
            store,
            calls,
            realtime,
            engines,
            tiers,
            clock,
            request_seconds=settings.max_request_seconds,
        ),
        tiers=tiers,
        sessions=session_runner(settings, store, calls, clock, blobs, realtime),
        datasets=datasets,
        scheduler=Scheduler(store, datasets, clock),
        pools=[p.to_pool() for p in settings.pools],
        prices=PriceRecorder(
            store,
            {
                p.name: open_feed(p.feed, p.price_per_hour, clock())
                for p in settings.pools
                if p.to_pool().hourly
            },
            clock,
            every_seconds=settings.price_sample_seconds,
            keep=timedelta(days=settings.price_history_days),
        )
        if monitor
        else None,
        alive_seconds=2 * settings.lease_seconds,
        default_seconds_per_request=settings.seconds_per_request,
        datasets_dir=settings.datasets_dir or settings.data_dir / "datasets",
        dataset_uris=settings.dataset_uris,
        run_sessions=settings.agents_app is not None,
        keys=KeyService(store, clock),
        endpoints=WebhookEndpoints(
            store,
            clock,
            allow_http=settings.webhook_allow_http,
            timeout=settings.webhook_timeout_seconds,
        ),
        request_seconds=settings.max_request_seconds,
        drain_seconds=settings.drain_seconds,
        open_meta=settings.open_meta,
        files=files,
        batches=batches,
        message_batches=MessageBatches(store, batches, files),
        intake=intake,
        finalizer=finalizer,
        monitor=(
            Monitor(store, intake, finalizer, clock, files=files, metrics=metrics)
            if monitor
            else None
        ),
        metrics=metrics,
        webhooks=(
            WebhookSender(
                store,
                clock,
                settings.webhook_url,
                settings.webhook_secret,
                format=settings.webhook_format,
                policy=RetryPolicy(
                    max_attempts=settings.webhook_max_attempts,
                    base_seconds=settings.webhook_retry_base_seconds,
                    max_seconds=600,
                ),
                timeout=settings.webhook_timeout_seconds,
            )
            if monitor
            else None
        ),
        workers=[
            Worker(
                store,
                engines,
                clock,
                lease_size=settings.lease_size,
                lease_seconds=settings.lease_seconds,
                poll_seconds=settings.poll_seconds,
                flush_seconds=settings.flush_seconds,
                retry_policy=retry_policy,
                cache_ttl=cache_ttl,
                metrics=metrics,
                models=worker_models
                or sorted(m.name for m in catalog.models if pool.serves(m.name)),
                pool=pool,
                placement=placement,
                checks=checks,
                max_batch_wait=settings.max_batch_wait_seconds,
                venues=venues,
                pack_prefixes=settings.prefix_packing,
            )
            for _ in range(count)
        ],
    )


def ray_actors(settings: Settings, model: Model) -> Actors:
    """How the model's actors are sized (its `[models.ray]` table) and placed (on the
    nodes of this process's pool: its `ray_resources`)."""
    from slackwater.engines.ray import Actors

    config = next(m.ray for m in settings.models if m.name == model.name)
    pool = next(p for p in settings.pools if p.name == settings.pool_named().name)
    return Actors(
        num_cpus=config.num_cpus,
        num_gpus=config.num_gpus,
        min_actors=config.min_actors,
        max_actors=config.max_actors,
        idle_seconds=config.idle_seconds,
        resources=dict(pool.ray_resources),
    )


def ray_engine(settings: Settings, model: Model) -> Engine:
    """The model's engine as Ray actors."""
    from slackwater.engines.ray import RayEngine

    return RayEngine(placed(model, settings), ray_actors(settings, model))


def ray_scorer(settings: Settings, catalog: Catalog) -> TableScorer:
    """Dataset jobs of the classical models on Ray Data."""
    from slackwater.engines.ray import RayTableScorer

    return RayTableScorer(
        {
            m.name: (placed(m, settings), ray_actors(settings, m))
            for m in catalog.models
            if m.serves(Endpoint.PREDICTIONS)
        }
    )


def for_ray(settings: Settings, models: list[str] | None = None) -> Settings:
    """The settings a `worker --ray` runs with: unless `lease_size` was set, a chunk is two
    engine batches of its models, so the chunks leased at once spread over the actors
    (a 256-request chunk would keep one actor busy while the others wait)."""
    if "lease_size" in settings.model_fields_set:
        return settings
    widest = max((m.max_batch_size for m in _served(settings, models)), default=1)
    return settings.model_copy(update={"lease_size": 2 * widest})


def ray_workers(settings: Settings, models: list[str] | None = None) -> int:
    """Chunks a Ray worker process runs at once: one per actor its models may have."""
    return sum(m.ray.max_actors for m in _served(settings, models))


def _served(settings: Settings, models: list[str] | None) -> list[ModelConfig]:
    """The configured models a worker runs (`models`: only those; None: all)."""
    return [m for m in settings.models if not models or m.name in models]


def join_ray(address: str) -> None:
    from slackwater.engines.ray import connect

    connect(address)


def placed(model: Model, settings: Settings) -> Model:
    """The model with where this process keeps files: its data and model cache dirs."""
    where = {"data_dir": str(settings.data_dir), "cache_dir": str(settings.model_cache_dir)}
    return replace(model, options={**where, **model.options})


def session_runner(
    settings: Settings,
    store: Store,
    calls: CallQueue,
    clock: Clock = utcnow,
    blobs: BlobStore | None = None,
    realtime: Realtime | None = None,
) -> SessionRunner:
    """The runner of the sessions of the settings' `agents_app` (its inferences routed
    and admitted by `realtime`, or by one built here as the server builds its own)."""
    if realtime is None:
        catalog = Catalog(settings.catalog())
        counters = tokenizers(settings, catalog)
        router = router_for(settings, catalog, frozenset(load_checks(settings.checks)), counters)
        realtime = Realtime(catalog, router, Admission(catalog, counters))
    return SessionRunner(
        store,
        calls,
        load_agents(settings.agents_app),
        settings.tiers(),
        clock,
        blobs or LocalBlobStore(settings.data_dir / "files"),
        realtime,
        price_per_hour=settings.pool_named().price_per_hour,
        lease_seconds=settings.session_lease_seconds,
        poll_seconds=settings.session_poll_seconds,
    )


def open_store(settings: Settings) -> Store:
    """The store the settings name (SQLite under the data directory by default)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqlStore(settings.resolved_database_url, webhooks=settings.webhook_url is not None)


def token_counters(settings: Settings, catalog: Catalog) -> dict[str, TokenCounter]:
    """Each local model's own tokenizer (no weights loaded), where it has one."""
    return {
        m.name: counter
        for m in catalog.models
        if m.engine == "transformers"
        and (counter := token_counter(placed(m, settings), settings.data_dir)) is not None
    }


def make_tiny_model(settings: Settings, path: Path | None = None) -> Path:
    """Build the tiny random-weight Llama (fast to load, for tests) at the path of the
    config's `tiny-llama` model, else `<data_dir>/models/tiny-llama`, unless `path` is
    given; an existing model there is kept."""
    if path is None:
        spec = next((m for m in settings.models if m.name == TINY_MODEL), None)
        where = str(spec.options.get("path", "")) if spec else ""
        path = resolve_path(where or "{data_dir}/models/tiny-llama", settings.data_dir)
    if not (path / "config.json").exists():
        build_tiny_llama(path)
    return path


def spot_traces(
    paths: Sequence[Path], price_paths: Sequence[Path], spot_prices: Sequence[str]
) -> list[Trace]:
    """Spot pools for the simulator: availability traces (the shared traces' format),
    each priced by its price trace, or at a fixed $/hour (one for all, or one each)."""
    if price_paths and len(price_paths) != len(paths):
        raise ConfigError(f"give one price trace per trace ({len(paths)}), or none")
    if len(spot_prices) > 1 and len(spot_prices) != len(paths):
        raise ConfigError(f"give one spot price, or one per trace ({len(paths)})")
    pools = []
    for i, path in enumerate(paths):
        trace = load_trace(path, price_paths[i] if price_paths else None)
        if trace.spot_prices is None:
            given = spot_prices[i if len(spot_prices) > 1 else 0] if spot_prices else "0.918"
            try:
                price = Decimal(given)
            except ArithmeticError:
                raise ConfigError(f"spot price {given!r} is not a number") from None
            trace = replace(trace, spot_prices=[price] * len(trace))
        pools.append(trace)
    return pools


def _placement(settings: Settings, store: Store, pool: Pool, clock: Clock) -> Placement | None:
    """The planner's gate for workers on a spot or on-demand pool; None for the rest."""
    if pool.kind not in (PoolKind.SPOT, PoolKind.ON_DEMAND):
        return None
    start = clock()
    demand = next((p for p in settings.pools if p.kind is PoolKind.ON_DEMAND), None)
    return Placement(
        store,
        pool,
        open_feed(pool.feed, pool.price_per_hour, start),
        clock,
        SlackReserve(
            settings.reserve_restarts,
            settings.cycle_restarts,
            settings.cheaper_pool_margin,
            settings.outage_wait_factor,
        ),
        spot_feeds={
            p.name: open_feed(p.feed, p.price_per_hour, start)
            for p in settings.pools
            if p.kind is PoolKind.SPOT
        },
        # Without an on-demand pool, spot has nothing cheaper to fall back from.
        on_demand_price=demand.price_per_hour if demand else Decimal("Infinity"),
        on_demand_pools=[p.name for p in settings.pools if p.kind is PoolKind.ON_DEMAND],
        restart_seconds=settings.restart_seconds,
        tick_seconds=settings.lease_seconds,
        max_spot_price=settings.max_spot_price,
        # Workers announce themselves every lease_seconds / 3 at most.
        alive_seconds=2 * settings.lease_seconds,
        default_seconds_per_request=settings.seconds_per_request,
        venues=_venues(settings),
    )


def _venues(settings: Settings) -> dict[str, Venue]:
    """Each model's batch venue: the provider model, the price the ledger will bill a
    batch's requests there, its pool's window."""
    models = {m.name: m.to_model() for m in settings.models}
    pools = {
        name: p.to_pool() for p in settings.pools if p.kind in VENUE_KINDS for name in p.models
    }
    return {
        name: Venue(
            model.batch_venue,
            billed_price(models[model.batch_venue], pools[model.batch_venue], Tier.BATCH),
            pools[model.batch_venue].turnaround_seconds,
        )
        for name, model in models.items()
        if model.batch_venue is not None  # a declared model of a provider pool (config)
    }


def tokenizers(settings: Settings, catalog: Catalog) -> dict[str, TokenCounter]:
    """Each local model's own token counter, its tokenizer loaded on first use."""
    return {
        m.name: lazy_counter(partial(token_counter, placed(m, settings), settings.data_dir))
        for m in catalog.models
        if m.engine == "transformers"
    }


def router_for(
    settings: Settings,
    catalog: Catalog,
    checks: frozenset[str] = frozenset(),
    counters: dict[str, TokenCounter] | None = None,
) -> AutoRouter:
    """The router of "auto" and named routes, as the server runs it."""
    return AutoRouter(
        catalog,
        routes={r.name: r.constraints() for r in settings.routes},
        checks=checks,
        counters=tokenizers(settings, catalog) if counters is None else counters,
        predict=_learned(settings, catalog),
    )


def _learned(settings: Settings, catalog: Catalog) -> LearnedQuality | None:
    """The learned router, when `router_data` names one; it embeds with a local model."""
    if settings.router_data is None:
        return None
    path = settings.router_data
    if not path.is_file():
        raise ConfigError(f"router_data {path} does not exist (see `slackwater router train`)")
    check_router(path, settings.router_max_tokens)
    return LearnedQuality(partial(load_router, path), router_embedder(settings, catalog))


def router_embedder(settings: Settings, catalog: Catalog) -> Embed:
    """Embeds prompts for the learned router: the local model named by
    `router_embedding_model`, reading the first `router_max_tokens` of each prompt, in
    `router_dtype` (auto: the model's own `dtype` option if it has one, else bfloat16
    where the hardware computes it natively)."""
    model = catalog.find(settings.router_embedding_model)
    if model is None or model.engine != "transformers":
        raise ConfigError(
            f"router_embedding_model {settings.router_embedding_model!r} must be a local "
            "transformers embedding model"
        )
    dtype = router_dtype(settings.router_dtype, model.options.get("dtype"))
    engine = TransformersEngine(
        replace(
            model,
            context_window=settings.router_max_tokens,
            options={**placed(model, settings).options, "dtype": dtype},
        )
    )
    return partial(embed_texts, engine)


def router_dtype(choice: str, model_option: object = None) -> str:
    if choice != "auto":
        return choice
    if model_option not in (None, "auto"):
        return str(model_option)
    return "bfloat16" if native_bfloat16() else "float32"
