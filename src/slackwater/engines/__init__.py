"""Engines: one module each. Installed engines register under the `slackwater.engines`
entry-point group with a class taking a Model; code can also register a factory at run
time (`register_engine`), which is how a test or an application adds a function-backed
engine (`engines.function.FunctionEngine`)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from slackwater.domain.errors import ConfigError
from slackwater.domain.model import Model
from slackwater.ports import Engine

EngineFactory = Callable[[Model], Engine]
GROUP = "slackwater.engines"
_registered: dict[str, EngineFactory] = {}


def register_engine(name: str, factory: EngineFactory) -> None:
    """Make `engine = "<name>"` in a model's config build its engine with `factory`."""
    _registered[name] = factory


def installed_engines() -> list[str]:
    """The engines installed as entry points (this package's and plug-ins')."""
    return sorted({e.name for e in entry_points(group=GROUP)})


def engine_names() -> list[str]:
    return sorted({*installed_engines(), *_registered})


def engine_factory(name: str) -> EngineFactory:
    if name in _registered:
        return _registered[name]
    for entry in entry_points(group=GROUP, name=name):
        factory: EngineFactory = entry.load()
        return factory
    raise ConfigError(f"unknown engine {name!r}; installed engines: {', '.join(engine_names())}")


def create_engine(model: Model) -> Engine:
    return engine_factory(model.engine)(model)
