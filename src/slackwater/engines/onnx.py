"""Any ONNX model (`engine = "onnx"`) on ONNX Runtime: on the GPU where its CUDA provider
is installed and a device is there, else on the CPU. A scikit-learn model exported with
skl2onnx (`options={"zipmap": False}` for classifiers) answers `predict` from its first
output and `predict_proba` from its probabilities; a network's first output is its
`predict` and its `embedding`.

    options = { path = "models/iris.onnx", classes = [0, 1, 2] }
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slackwater.domain.model import Model
from slackwater.engines.arrays import EMBEDDING, PREDICT, PROBA, ArrayEngine, not_a_model

_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


class OnnxEngine(ArrayEngine):
    def __init__(self, model: Model) -> None:
        super().__init__(model)
        self.classes: list[Any] | None = model.options.get("classes")
        self.session: Any = None
        self.input = ""
        self.output_names: list[str] = []
        self.width: int | None = None

    def load(self) -> None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), providers=providers)
        except Exception as exc:
            raise not_a_model(self.model, self.path, exc) from None
        first = self.session.get_inputs()[0]
        self.input = first.name
        self.dtype = _TYPES.get(first.type, np.float32)
        shape = first.shape
        self.width = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def outputs(self) -> frozenset[str]:
        found = {PREDICT, EMBEDDING}
        if self._proba_output() is not None:
            found.add(PROBA)
        return frozenset(found)

    def _proba_output(self) -> str | None:
        for name in self.output_names:
            if "prob" in name.lower():
                return name
        return None

    def feature_count(self) -> int | None:
        return self.width if self.width is not None else super().feature_count()

    def compute(self, output: str, rows: np.ndarray) -> tuple[np.ndarray, list[Any] | None]:
        name = self._proba_output() if output == PROBA else self.output_names[0]
        [values] = self.session.run([name], {self.input: rows.astype(self.dtype, copy=False)})
        values = np.asarray(values)
        if output == PROBA:
            classes = self.classes or list(range(values.shape[1]))
            return values, classes
        return values, None
