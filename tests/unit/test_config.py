from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from slackwater.config import Settings
from slackwater.domain.errors import ConfigError

TOML = """
port = 9001
lease_size = 64

[[models]]
name = "echo"
engine = "fake"
endpoints = ["/v1/chat/completions"]
max_batch_size = 8
options = { latency_ms = 5 }
price = { input = "0.10", output = "0.40" }
"""


def test_defaults_need_no_file() -> None:
    settings = Settings.load()
    names = [m.name for m in settings.catalog()]
    assert names == ["all-MiniLM-L6-v2", "smollm2"]
    assert settings.max_file_bytes == 2 * 1024**3 and settings.max_file_lines == 1_000_000
    assert settings.resolved_database_url.startswith("sqlite:///")


def test_file_then_environment_then_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "slackwater.toml"
    path.write_text(TOML)
    settings = Settings.load(path)
    assert settings.port == 9001 and settings.lease_size == 64
    [model] = settings.catalog()
    assert model.engine == "fake" and str(model.price.output) == "0.40"
    monkeypatch.setenv("SLACKWATER_PORT", "9002")
    assert Settings.load(path).port == 9002
    assert Settings.load(path, port=9003, host=None).port == 9003
    monkeypatch.setenv("SLACKWATER_CONFIG", str(path))
    assert Settings.load().lease_size == 64


def test_bad_config_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TOML.replace("max_batch_size = 8", "max_batch_size = 0"))
    with pytest.raises(ConfigError, match=r"bad.toml.*models.0.max_batch_size"):
        Settings.load(path)
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "missing.toml")
    path.write_text(TOML + TOML.split("\n\n", 1)[1])
    with pytest.raises(ConfigError, match="declared twice"):
        Settings.load(path)


def test_the_documented_config_example_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "slackwater.toml"
    path.write_text(example)
    settings = Settings.load(path)
    assert [m.engine for m in settings.catalog()] == ["transformers", "transformers", "http"]


def test_router_dtype_setting_over_model_option_over_hardware() -> None:
    pytest.importorskip("torch")
    from slackwater.app import router_dtype
    from slackwater.engines.transformers import native_bfloat16

    assert router_dtype("float32", "bfloat16") == "float32"
    assert router_dtype("auto", "float16") == "float16"
    assert router_dtype("auto", None) == ("bfloat16" if native_bfloat16() else "float32")
    with pytest.raises(ValidationError, match="router_dtype"):
        Settings(router_dtype="int4")  # type: ignore[arg-type]


def test_service_tiers_over_the_built_in_ones(tmp_path: Path) -> None:
    path = tmp_path / "tiers.toml"
    path.write_text(
        "[service_tiers.flex]\nwindow_seconds = 120\n\n"
        "[service_tiers.overnight]\nwindow_seconds = 43200\nmax_queued = 5\n"
    )
    tiers = Settings.load(path).tiers()
    assert tiers["flex"].window_seconds == 120 and tiers["overnight"].max_queued == 5
    assert tiers["default"].realtime and tiers["standard"].window_seconds == 300
    for bad in ("auto", "Has Space"):
        with pytest.raises(ConfigError, match="service_tiers: service tier"):
            Settings.load(service_tiers={bad: {"window_seconds": 1}})


def test_a_batch_venue_must_be_a_declared_model_of_a_provider_batch_pool() -> None:
    from slackwater.config import ModelConfig, PoolConfig

    chat = ["/v1/chat/completions"]
    local = ModelConfig(name="m", engine="fake", endpoints=chat, batch_venue="v")
    pool = PoolConfig(name="provider", kind="provider_batch", models=["v"])
    with pytest.raises(ConfigError, match="batch_venue 'v' is not a declared model"):
        Settings.load(models=[local], pools=[pool])  # v is in the pool, not declared
    venue = ModelConfig(name="v", engine="fake", endpoints=chat)
    assert Settings.load(models=[local, venue], pools=[pool]).models[0].batch_venue == "v"
    # An endpoint's cheaper tier (flex) is a venue too.
    flex = PoolConfig(name="endpoint", kind="provider_realtime", models=["v"])
    assert Settings.load(models=[local, venue], pools=[flex]).models[0].batch_venue == "v"
    hourly = PoolConfig(name="spot", kind="spot", models=["v"])
    with pytest.raises(ConfigError, match="provider_batch or provider_realtime pool"):
        Settings.load(models=[local, venue], pools=[hourly])
