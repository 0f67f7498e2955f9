"""The learned router in live routing: labelled outcomes in, per-model quality out.

Training data is a folder of CSV files, one row per prompt: the prompt, then one column
per model saying whether that model answered it well (`True`/`False`; empty: not
tried). `slackwater router train` embeds the prompts with the local MiniLM model and
fits the router (`policy.quality.LearnedRouter`) and saves vectors, outcomes and the
fitted weights in one `.npz` file; with `router_data` pointing at it, every line routed
by "auto" (or a named route) gets each model's predicted chance of success, which
`min_quality` and `max_quality_drop` then threshold.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import ThreadpoolController

from slackwater.domain.errors import ConfigError
from slackwater.policy.quality import LearnedRouter, NeighbourQuality

Embed = Callable[[Sequence[str]], NDArray[np.float32]]


@dataclass(frozen=True)
class Labelled:
    prompts: list[str]
    groups: list[str]  # the file each prompt came from (a subject, a task)
    outcomes: NDArray[np.float32]  # prompts x models: 1 good, 0 not, NaN not tried
    models: list[str]


def _label(value: str) -> float:
    value = value.strip().lower()
    if value in ("true", "1", "yes"):
        return 1.0
    if value in ("false", "0", "no"):
        return 0.0
    if value == "":
        return float("nan")
    raise ValueError(value)


def read_outcomes(folder: Path) -> Labelled:
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise ConfigError(f"no CSV files in {folder}")
    prompts: list[str] = []
    groups: list[str] = []
    rows: list[list[float]] = []
    models: list[str] = []
    csv.field_size_limit(sys.maxsize)
    for path in files:
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or len(header) < 2:
                raise ConfigError(f"{path}:1: expected a prompt column and model columns")
            if models and header[1:] != models:
                raise ConfigError(f"{path}:1: model columns {header[1:]} differ from {models}")
            models = header[1:]
            for number, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    raise ConfigError(f"{path}:{number}: expected {len(header)} fields")
                try:
                    rows.append([_label(v) for v in row[1:]])
                except ValueError as exc:
                    raise ConfigError(f"{path}:{number}: {exc} is not True or False") from None
                prompts.append(row[0])
                groups.append(path.stem)
    return Labelled(prompts, groups, np.asarray(rows, dtype=np.float32), models)


def save_router(
    path: Path,
    router: LearnedRouter,
    vectors: NDArray[np.float32],
    outcomes: NDArray[np.float32],
    max_tokens: int,
) -> None:
    arrays: dict[str, Any] = {
        "vectors": vectors.astype(np.float16),
        "outcomes": outcomes,
        "models": np.asarray(router.models),
        "max_tokens": np.asarray(max_tokens),
        **router.arrays(),
    }
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)


def _not_trained(path: Path, why: object) -> ConfigError:
    return ConfigError(
        f"router_data {path}: not a file from this version's `slackwater router train` "
        f"({why}); train it again"
    )


def load_router(path: Path) -> LearnedRouter:
    try:
        data = np.load(path, allow_pickle=False)
        vectors, outcomes = data["vectors"].astype(np.float32), data["outcomes"]
        neighbours = NeighbourQuality([str(m) for m in data["models"]])
        neighbours.observe(vectors, outcomes)
        return LearnedRouter.from_arrays(neighbours, data)
    except (OSError, KeyError, ValueError) as exc:
        raise _not_trained(path, exc) from None


def check_router(path: Path, max_tokens: int) -> None:
    """Fail fast unless `path` holds a fitted router embedded as live prompts will be."""
    try:
        with np.load(path, allow_pickle=False) as data:
            trained = int(data["max_tokens"])
            if "gains" not in data:
                raise KeyError("no fitted gain weights")
    except (OSError, KeyError, ValueError) as exc:
        raise _not_trained(path, exc) from None
    if trained != max_tokens:
        raise ConfigError(
            f"router_data {path} was embedded from the first {trained} tokens of each prompt "
            f"but router_max_tokens is {max_tokens}: set it to {trained} or train again"
        )


class LearnedQuality:
    """Predicted P(success) per model for prompts; embeds and loads on first use."""

    def __init__(self, load: Callable[[], LearnedRouter], embed: Embed) -> None:
        self._load = load
        self._embed = embed
        self._router: LearnedRouter | None = None
        self._threads: ThreadpoolController | None = None  # after torch has loaded its own

    def __call__(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not texts:
            return []
        if self._router is None:
            self._router = self._load()
        vectors = self._embed(list(texts))
        # NumPy's BLAS threads spin after a product and starve the embedding model's
        # threads on the next prompt (a single prompt took 5x longer): one is enough here.
        # One controller: finding the thread pools anew costs 0.2 ms a call.
        self._threads = self._threads or ThreadpoolController()
        with self._threads.limit(limits=1, user_api="blas"):
            rows = self._router.predict(vectors, texts)
        models = self._router.models
        return [{name: float(p) for name, p in zip(models, row, strict=True)} for row in rows]
