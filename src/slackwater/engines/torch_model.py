"""A torch model (`engine = "torch"`): TorchScript (`.pt`, from `torch.jit.save`) or an
exported program (`.pt2`, from `torch.export.save`); neither unpickles arbitrary code.
On the GPU when there is one (`options.device` to choose). Each row's output is the
module's output for it: `predict`, and `embedding` for an encoder; with
`options.classes`, `predict` is the class of the largest output and `predict_proba`
their softmax.

    options = { path = "models/net.pt2", classes = ["no", "yes"] }
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slackwater.domain.model import Model
from slackwater.engines.arrays import EMBEDDING, PREDICT, PROBA, ArrayEngine, not_a_model


class TorchEngine(ArrayEngine):
    def __init__(self, model: Model) -> None:
        super().__init__(model)
        self.classes: list[Any] | None = model.options.get("classes")
        self.device = str(model.options.get("device", "auto"))
        self.module: Any = None
        self.dtype = np.float32

    def load(self) -> None:
        import torch

        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            if self.path.suffix == ".pt2":
                self.module = torch.export.load(str(self.path)).module()
            else:
                self.module = torch.jit.load(str(self.path), map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise not_a_model(self.model, self.path, exc) from None
        self.module = self.module.to(self.device)

    def outputs(self) -> frozenset[str]:
        return frozenset({PREDICT, EMBEDDING, PROBA} if self.classes else {PREDICT, EMBEDDING})

    def compute(self, output: str, rows: np.ndarray) -> tuple[np.ndarray, list[Any] | None]:
        import torch

        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
            values = self.module(tensor.to(self.device)).float().cpu()
        if output == PROBA:
            return torch.softmax(values, dim=-1).numpy(), self.classes
        if output == PREDICT and self.classes:
            picked = values.argmax(dim=-1).numpy()
            return np.asarray([self.classes[i] for i in picked]), None
        return values.numpy(), None
