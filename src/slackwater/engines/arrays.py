"""What the classical-model engines (scikit-learn, ONNX, torch) share: prediction bodies
turned into one array, one vectorised call per output kind over every body of an engine
call, and the answers split back per body.

A body's rows are checked as a whole: a row that does not fit the model (a missing or
unknown feature, a value that is not a number, NaN where the model takes none) fails its
body with an error naming the row and the feature; the other bodies of the call run.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slackwater.domain.batch import Endpoint
from slackwater.domain.errors import ConfigError
from slackwater.domain.model import Model
from slackwater.domain.request import Outcome, Usage

PREDICT, PROBA, EMBEDDING, NEIGHBORS = "predict", "predict_proba", "embedding", "neighbors"


class RowError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _number(value: Any, where: str, feature: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError(where, f"{where}: feature {feature!r} is {value!r}, not a number")
    return float(value)


class ArrayEngine(ABC):
    """A classical model behind the Engine port, serving /v1/predictions."""

    # Calls run side by side (the libraries predict from several threads); online calls
    # are gathered into one by the micro-batcher (runtime/microbatch.py).
    serial = False

    def __init__(self, model: Model) -> None:
        self.model = model
        options = model.options
        if "path" not in options:
            raise ConfigError(f"model {model.name}: options.path names the model file")
        self.path = Path(str(options["path"])).expanduser()
        self.features: list[str] | None = (
            [str(f) for f in options["features"]] if options.get("features") else None
        )
        self.allow_nan = bool(options.get("allow_nan", False))
        self.dtype: Any = np.float64

    # What an engine provides.
    @abstractmethod
    def load(self) -> None:
        """Load the model file (in a thread); ConfigError naming the file if it cannot."""

    @abstractmethod
    def outputs(self) -> frozenset[str]: ...

    @abstractmethod
    def compute(self, output: str, rows: np.ndarray) -> tuple[np.ndarray, list[Any] | None]:
        """The output for each row (first axis), and the class labels for
        `predict_proba` (None otherwise)."""

    def feature_count(self) -> int | None:
        return len(self.features) if self.features else None

    # The Engine port.
    async def start(self) -> None:
        if not self.path.is_file():
            raise ConfigError(f"model {self.model.name}: {self.path} is not a file")
        await asyncio.to_thread(self.load)
        if self.features is None:
            self.features = self.known_features()

    def known_features(self) -> list[str] | None:
        """Feature names the model file carries (None: rows are lists in its order)."""
        return None

    async def run(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        if endpoint != Endpoint.PREDICTIONS:
            error = Outcome.error(
                400, f"model {self.model.name} serves {Endpoint.PREDICTIONS.value} only"
            )
            return [error] * len(bodies)
        return await asyncio.to_thread(self.predict_all, bodies)

    async def close(self) -> None:
        return None

    def predict_array(self, output: str, rows: np.ndarray) -> tuple[np.ndarray, list[Any] | None]:
        """What a dataset job runs: a table's chunk, already in the model's column order."""
        if output not in self.outputs():
            known = ", ".join(sorted(self.outputs()))
            raise ValueError(f"model {self.model.name} gives {known}, not {output}")
        width = self.feature_count()
        if rows.ndim != 2 or (width is not None and rows.shape[1] != width):
            raise ValueError(f"rows have {rows.shape[-1]} features; the model takes {width}")
        rows = rows.astype(self.dtype, copy=False)
        if not self.allow_nan:
            bad = np.argwhere(np.isnan(rows))
            if len(bad):
                row, column = (int(v) for v in bad[0])
                raise ValueError(f"row {row}: feature {self._name(column)!r} is empty (NaN)")
        return self.compute(output, rows)

    # The work.
    def predict_all(self, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(bodies)
        groups: dict[str, list[tuple[int, np.ndarray]]] = {}
        for i, body in enumerate(bodies):
            output = str(body.get("output") or PREDICT)
            if output not in self.outputs():
                known = ", ".join(sorted(self.outputs()))
                outcomes[i] = _refused("output", f"this model gives {known}, not {output}")
                continue
            try:
                rows = self.rows(body.get("inputs"))
            except RowError as exc:
                outcomes[i] = _refused(exc.param, str(exc))
                continue
            groups.setdefault(output, []).append((i, rows))
        for output, members in groups.items():
            stacked = np.concatenate([rows for _, rows in members])
            try:
                values, classes = self.compute(output, stacked)
            except Exception as exc:  # the library refused the rows: each body fails
                for i, _ in members:
                    outcomes[i] = _refused("inputs", f"the model could not predict: {exc}")
                continue
            start = 0
            for i, rows in members:
                part = values[start : start + len(rows)]
                start += len(rows)
                outcomes[i] = self.answer(output, part, classes, len(rows))
        return [o for o in outcomes if o is not None]

    def rows(self, inputs: Any) -> np.ndarray:
        """The body's rows as one 2-D array in the model's feature order."""
        if not isinstance(inputs, list) or not inputs:
            raise RowError("inputs", "inputs must be a non-empty list of rows")
        if any(isinstance(row, dict) for row in inputs):
            inputs = self._by_name(inputs)
        width = self.feature_count()
        try:
            array = np.asarray(inputs, dtype=self.dtype)
        except (ValueError, TypeError):
            array = None
        if array is None or array.ndim != 2 or (width is not None and array.shape[1] != width):
            self._diagnose(inputs, width)  # names the first row that does not fit
            raise RowError("inputs", "inputs must be rows of numbers")
        if not self.allow_nan:
            bad = np.argwhere(np.isnan(array))
            if len(bad):
                row, column = (int(v) for v in bad[0])
                where = f"inputs[{row}]"
                raise RowError(where, f"{where}: feature {self._name(column)!r} is NaN")
        return array

    def _by_name(self, inputs: list[Any]) -> list[Any]:
        """Rows sent as objects, in the model's feature order (rows sent as lists stay)."""
        names = self.features
        out = []
        for n, row in enumerate(inputs):
            if not isinstance(row, dict):
                out.append(row)
                continue
            where = f"inputs[{n}]"
            if names is None:
                raise RowError(
                    where, "this model has no feature names (set options.features): send lists"
                )
            missing = [f for f in names if f not in row]
            if missing:
                raise RowError(where, f"{where}: missing feature {missing[0]!r}")
            if len(row) != len(names):
                extra = sorted(set(row) - set(names))
                raise RowError(where, f"{where}: unknown feature {extra[0]!r}")
            out.append([row[f] for f in names])
        return out

    def _diagnose(self, rows: list[Any], width: int | None) -> None:
        width = width if width is not None else len(rows[0]) if isinstance(rows[0], list) else 0
        for n, row in enumerate(rows):
            where = f"inputs[{n}]"
            if not isinstance(row, list):
                raise RowError(where, f"{where}: a row is a list of feature values")
            if len(row) != width:
                raise RowError(where, f"{where}: {len(row)} features; the model takes {width}")
            for column, value in enumerate(row):
                if value is None:
                    if not self.allow_nan:
                        raise RowError(where, f"{where}: feature {self._name(column)!r} is null")
                    continue
                _number(value, where, self._name(column))

    def _name(self, column: int) -> str:
        return self.features[column] if self.features else str(column)

    def answer(
        self, output: str, values: np.ndarray, classes: list[Any] | None, rows: int
    ) -> Outcome:
        body: dict[str, Any] = {
            "object": "predictions",
            "model": self.model.name,
            "output": output,
            "predictions": _plain(values),
            "usage": {"rows": rows},
        }
        if classes is not None:
            body["classes"] = classes
        # Rows are the unit of work: the ledger shares an engine call's time by them.
        return Outcome(200, body, Usage(prompt_tokens=rows, completion_tokens=0))


def _plain(values: np.ndarray) -> list[Any]:
    """JSON values: numbers as Python numbers (NaN as null), labels as they are."""
    listed = values.tolist()
    if values.dtype.kind == "f":
        return _no_nan(listed)
    return list(listed)


def _no_nan(values: list[Any]) -> list[Any]:
    return [
        _no_nan(v) if isinstance(v, list) else None if isinstance(v, float) and math.isnan(v) else v
        for v in values
    ]


def _refused(param: str, message: str) -> Outcome:
    return Outcome.error(400, message, code="invalid_value", param=param)


def not_a_model(model: Model, path: Path, why: object) -> ConfigError:
    return ConfigError(f"model {model.name}: {path} is not a model this engine loads ({why})")
