"""Classical models fitted on scikit-learn's bundled data sets (no downloads) and saved as
the prediction engines load them: a skops file, an ONNX export, a torch exported program."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Saved:
    skops: Path  # a pipeline: scaler + logistic regression on iris
    onnx: Path  # the same pipeline, exported
    torch: Path  # a small network trained on iris
    estimator: Any
    network: Any
    rows: np.ndarray  # iris's features, float64
    features: list[str]


def build(target: Path) -> Saved:
    import skops.io
    import torch
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    target.mkdir(parents=True, exist_ok=True)
    iris = load_iris()
    rows, labels = iris.data, iris.target
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(rows, labels)
    skops.io.dump(estimator, target / "iris.skops")
    exported = to_onnx(estimator, rows[:1].astype(np.float32), options={"zipmap": False})
    (target / "iris.onnx").write_bytes(exported.SerializeToString())

    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    ).eval()
    x, y = torch.tensor(rows, dtype=torch.float32), torch.tensor(labels)
    optimiser = torch.optim.Adam(network.parameters(), lr=0.05)
    for _ in range(200):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(network(x), y).backward()
        optimiser.step()
    network.eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(network, (x[:2],), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(target / "iris.pt2"))
    return Saved(
        target / "iris.skops",
        target / "iris.onnx",
        target / "iris.pt2",
        estimator,
        network,
        rows,
        list(iris.feature_names),
    )
