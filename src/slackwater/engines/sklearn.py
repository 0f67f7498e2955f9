"""scikit-learn estimators and pipelines (`engine = "sklearn"`).

A model file is read with skops (`.skops`, written by `skops.io.dump`), which loads only
the types it is told to trust: scikit-learn's and numpy's own are trusted by skops, any
other type the file holds must be listed in `options.trusted` after a look at the
file (`skops.io.get_untrusted_types`), else loading is refused with their names. A
pickle or joblib file (`.pkl`, `.joblib`) runs code as it loads, so it is refused unless
`options.allow_pickle = true` says the file is trusted.

skops lists the types it trusts by importing every scikit-learn estimator (seconds, and
hundreds of MB when torch is installed beside it), so a cold start paid that on each
load. Once a file has loaded through skops, the estimator is kept in `model_cache_dir`
as a joblib file named by the file's hash, the trusted types and the library versions;
later loads of that same file read the copy. The copy is as trusted as the cache
directory (write access to it is write access to what the server runs, like its code).

    [[models]]
    name = "iris"
    engine = "sklearn"
    endpoints = ["/v1/predictions"]
    options = { path = "models/iris.skops", features = ["sepal length", ...] }
"""

from __future__ import annotations

import hashlib
import os
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from slackwater.domain.errors import ConfigError
from slackwater.domain.model import Model
from slackwater.engines.arrays import (
    EMBEDDING,
    NEIGHBORS,
    PREDICT,
    PROBA,
    ArrayEngine,
    not_a_model,
)

PICKLES = (".pkl", ".pickle", ".joblib")


class SklearnEngine(ArrayEngine):
    def __init__(self, model: Model) -> None:
        super().__init__(model)
        self.trusted = [str(t) for t in model.options.get("trusted", [])]
        self.allow_pickle = bool(model.options.get("allow_pickle", False))
        self.estimator: Any = None

    def load(self) -> None:
        if self.path.suffix in PICKLES:
            if not self.allow_pickle:
                raise ConfigError(
                    f"model {self.model.name}: {self.path} is a pickle, which runs code as it "
                    "loads: save the model with skops (skops.io.dump), or set "
                    "options.allow_pickle = true for a file you trust"
                )
            import joblib

            try:
                self.estimator = joblib.load(self.path)
            except Exception as exc:
                raise not_a_model(self.model, self.path, exc) from None
        else:
            self.estimator = self._skops()
        if not callable(getattr(self.estimator, "predict", None)) and not callable(
            getattr(self.estimator, "transform", None)
        ):
            kind = type(self.estimator).__name__
            raise not_a_model(self.model, self.path, f"a {kind}, with no predict or transform")

    def _skops(self) -> Any:
        import joblib

        vetted = self._vetted_copy()
        if vetted is None:
            return self._vet()
        if vetted.exists():
            try:
                return joblib.load(vetted)
            except Exception:  # a copy cut short or from elsewhere: vet the file again
                vetted.unlink(missing_ok=True)
        estimator = self._vet()
        vetted.parent.mkdir(parents=True, exist_ok=True)
        partial = vetted.with_suffix(f".{os.getpid()}.part")
        joblib.dump(estimator, partial)
        partial.replace(vetted)
        return estimator

    def _vetted_copy(self) -> Path | None:
        """Where a copy of this file, as vetted with these trusted types, is kept (None:
        the process has no model cache)."""
        cache = self.model.options.get("cache_dir")
        if not cache:
            return None
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        libraries = [version(name) for name in ("scikit-learn", "skops", "numpy")]
        digest.update(orjson.dumps([sorted(self.trusted), libraries]))
        return Path(str(cache)) / "sklearn" / f"{digest.hexdigest()}.joblib"

    def _vet(self) -> Any:
        from skops import io as skops_io

        try:
            untrusted = skops_io.get_untrusted_types(file=self.path)
        except Exception as exc:
            raise not_a_model(self.model, self.path, exc) from None
        refused = sorted(set(untrusted) - set(self.trusted))
        if refused:
            raise ConfigError(
                f"model {self.model.name}: {self.path} holds types not trusted: {refused}; "
                "if they are what you expect, list them in options.trusted"
            )
        try:
            return skops_io.load(self.path, trusted=untrusted)
        except Exception as exc:
            raise not_a_model(self.model, self.path, exc) from None

    def outputs(self) -> frozenset[str]:
        found = set()
        if hasattr(self.estimator, "predict"):
            found.add(PREDICT)
        if hasattr(self.estimator, "predict_proba"):
            found.add(PROBA)
        if hasattr(self.estimator, "transform"):
            found.add(EMBEDDING)
        if hasattr(self.estimator, "kneighbors"):
            found.add(NEIGHBORS)
        return frozenset(found)

    def feature_count(self) -> int | None:
        count = getattr(self.estimator, "n_features_in_", None)
        return int(count) if count is not None else super().feature_count()

    def known_features(self) -> list[str] | None:
        names = getattr(self.estimator, "feature_names_in_", None)
        return [str(n) for n in names] if names is not None else None

    def compute(self, output: str, rows: np.ndarray) -> tuple[np.ndarray, list[Any] | None]:
        with warnings.catch_warnings():
            # Fitted on a data frame: the rows are in its columns' order already.
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            if output == PROBA:
                classes = [_plain(c) for c in self.estimator.classes_]
                return np.asarray(self.estimator.predict_proba(rows)), classes
            if output == EMBEDDING:
                return np.asarray(self.estimator.transform(rows)), None
            if output == NEIGHBORS:
                return self._neighbors(rows), None
            return np.asarray(self.estimator.predict(rows)), None

    def _neighbors(self, rows: np.ndarray) -> np.ndarray:
        """The nearest of the rows the model was fitted on, nearest first: their labels
        for a classifier (fitted with item ids as labels), else their row numbers."""
        nearest = self.estimator.kneighbors(rows, return_distance=False)
        labels = getattr(self.estimator, "classes_", None)
        encoded = getattr(self.estimator, "_y", None)
        if labels is None or encoded is None:
            return np.asarray(nearest)
        named: np.ndarray = np.asarray(labels)[np.asarray(encoded)[nearest]]
        return named


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
