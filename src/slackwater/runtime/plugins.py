"""User-registered checks: from the `slackwater.checks` entry point group, or named in the
config as `checks = { name = "package.module:function" }`."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from importlib.metadata import entry_points

from slackwater.domain.errors import ConfigError
from slackwater.policy.checks import Check
from slackwater.runtime.sessions import Agents


def load_checks(configured: Mapping[str, str]) -> dict[str, Check]:
    found: dict[str, Check] = {}
    for plugin in entry_points(group="slackwater.checks"):
        found[plugin.name] = plugin.load()
    for name, target in configured.items():
        module, _, attribute = target.partition(":")
        try:
            check = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"checks.{name}: cannot load {target!r} ({exc})") from None
        if not callable(check):
            raise ConfigError(f"checks.{name}: {target!r} is not callable")
        found[name] = check
    return found


def load_agents(target: str | None) -> Agents:
    """The `Agents` at "module:attribute" (an empty one for None), the module found on
    the path or in the current directory (as uvicorn finds an app)."""
    if target is None:
        return Agents()
    here = os.getcwd()
    if here not in sys.path:
        sys.path.append(here)
    module, _, attribute = target.partition(":")
    try:
        agents = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"agents_app: cannot load {target!r} ({exc})") from None
    if not isinstance(agents, Agents):
        raise ConfigError(f"agents_app: {target!r} is not a slackwater Agents")
    return agents
