"""Engines: one module each; third-party engines register under the
`slackwater.engines` entry-point group with a class taking a Model."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from slackwater.domain.errors import ConfigError
from slackwater.domain.model import Model
from slackwater.ports import Engine


def engine_class(name: str) -> Any:
    found = entry_points(group="slackwater.engines", name=name)
    for entry in found:
        return entry.load()
    known = sorted(e.name for e in entry_points(group="slackwater.engines"))
    raise ConfigError(f"unknown engine {name!r}; installed engines: {', '.join(known)}")


def create_engine(model: Model) -> Engine:
    engine: Engine = engine_class(model.engine)(model)
    return engine
