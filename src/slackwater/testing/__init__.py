"""Test helpers for engine authors: the Engine contract suite (`EngineContract`)."""

from slackwater.testing.engine_contract import EngineContract, Engines

__all__ = ["EngineContract", "Engines"]
