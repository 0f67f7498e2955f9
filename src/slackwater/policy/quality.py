"""Predicted quality: each model's chance of answering a prompt well, learned from outcomes.

A similarity-weighted nearest-neighbour estimate over prompt embeddings (unit vectors,
e.g. from the local MiniLM): for a new prompt, the k most similar labelled prompts vote
with weights exp(similarity / temperature), shrunk towards each model's overall success
rate. No I/O: embeddings come in as arrays. Outcomes can be added at any time
(`observe`), which is how checks feed back into the estimates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]


@dataclass
class NeighbourQuality:
    models: list[str]
    k: int = 64
    temperature: float = 0.05
    prior_weight: float = 2.0  # pseudo-votes for the model's overall success rate
    _vectors: list[Vectors] = field(default_factory=list)
    _labels: list[NDArray[np.float32]] = field(default_factory=list)
    _matrix: Vectors | None = None
    _outcomes: NDArray[np.float32] | None = None

    def observe(self, vectors: Vectors, outcomes: NDArray[np.float32]) -> None:
        """Add labelled prompts: `outcomes[i, j]` is 1 if model j answered prompt i well,
        0 if not, NaN if it was not tried."""
        if vectors.shape[0] != outcomes.shape[0] or outcomes.shape[1] != len(self.models):
            raise ValueError("one row of outcomes per vector, one column per model")
        self._vectors.append(np.asarray(vectors, dtype=np.float32))
        self._labels.append(np.asarray(outcomes, dtype=np.float32))
        self._matrix = self._outcomes = None

    def _data(self) -> tuple[Vectors, NDArray[np.float32]]:
        if self._matrix is None or self._outcomes is None:
            if not self._vectors:
                raise ValueError("no labelled prompts yet")
            self._matrix = np.concatenate(self._vectors)
            self._outcomes = np.concatenate(self._labels)
        return self._matrix, self._outcomes

    def predict(
        self, queries: Vectors, skip: NDArray[np.int64] | None = None
    ) -> NDArray[np.float64]:
        """P(success) per query (rows) and model (columns). `skip[i]` names a labelled
        prompt query i may not use (itself, for leave-one-out estimates), or -1."""
        matrix, outcomes = self._data()
        known = ~np.isnan(outcomes)
        filled = np.where(known, outcomes, 0.0)
        prior = filled.sum(0) / np.maximum(known.sum(0), 1)
        k = min(self.k, matrix.shape[0])
        result = np.empty((queries.shape[0], len(self.models)))
        for start in range(0, queries.shape[0], 1024):
            sims = np.asarray(queries[start : start + 1024] @ matrix.T, dtype=np.float64)
            if skip is not None:
                rows = np.arange(len(sims))
                own = skip[start : start + len(sims)]
                sims[rows[own >= 0], own[own >= 0]] = -np.inf
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            top_sims = np.take_along_axis(sims, top, axis=1)
            weights = np.exp((top_sims - top_sims.max(1, keepdims=True)) / self.temperature)
            weights[~np.isfinite(top_sims)] = 0.0
            votes = np.einsum("qk,qkm->qm", weights, filled[top])
            counts = np.einsum("qk,qkm->qm", weights, known[top].astype(np.float64))
            result[start : start + len(sims)] = (votes + self.prior_weight * prior) / (
                counts + self.prior_weight
            )
        return result


def text_shape(texts: Sequence[str]) -> NDArray[np.float64]:
    """Per prompt: log length (longer questions are harder) and the share of capitals
    (formulas, symbols and acronyms: technical questions, where weak models fall behind)."""
    out = np.empty((len(texts), 2))
    for i, text in enumerate(texts):
        n = max(len(text), 1)
        out[i, 0] = np.log(n)
        out[i, 1] = sum(c.isupper() for c in text) / n
    return out


@dataclass
class StrongOrWeak:
    """Scores how much a prompt gains from the strong model over the weak one.

    Signals weighted by a ridge regression fitted on the labelled prompts: the
    neighbours' estimate of the gain (leave-one-out on the training prompts, so the fit
    sees honest estimates) and the prompt's shape (`text_shape`). The shape features
    were chosen on the MMLU routing data and checked on six different partitions of its
    subjects (docs/routing.md).
    """

    models: list[str]
    weak: int = 0
    strong: int = 1
    ridge: float = 1.0
    quality: NeighbourQuality = field(init=False)
    coef: NDArray[np.float64] | None = None
    _shape: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None

    def __post_init__(self) -> None:
        self.quality = NeighbourQuality(self.models, k=1024, temperature=0.1)

    def _features(self, benefit: NDArray[np.float64], texts: Sequence[str]) -> Any:
        assert self._shape is not None
        mean, std = self._shape
        shape = (text_shape(texts) - mean) / std
        return np.column_stack([benefit, shape, np.ones(len(benefit))])

    def fit(self, vectors: Vectors, texts: Sequence[str], outcomes: Any) -> None:
        outcomes = np.asarray(outcomes, dtype=np.float32)
        self.quality = NeighbourQuality(self.models, k=1024, temperature=0.1)
        self.quality.observe(vectors, outcomes)
        shape = text_shape(texts)
        self._shape = (shape.mean(0), np.where(shape.std(0) > 0, shape.std(0), 1.0))
        own = np.arange(len(vectors), dtype=np.int64)
        loo = strong_benefit(self.quality.predict(vectors, skip=own), self.weak, self.strong)
        gain = outcomes[:, self.strong] - outcomes[:, self.weak]
        usable = ~np.isnan(gain)
        features = self._features(loo[usable], [t for t, u in zip(texts, usable, strict=True) if u])
        self.coef = np.linalg.solve(
            features.T @ features + self.ridge * np.eye(features.shape[1]),
            features.T @ gain[usable],
        )

    def score(self, vectors: Vectors, texts: Sequence[str]) -> NDArray[np.float64]:
        if self.coef is None:
            raise ValueError("fit the router on labelled prompts first")
        benefit = strong_benefit(self.quality.predict(vectors), self.weak, self.strong)
        return np.asarray(self._features(benefit, texts) @ self.coef, dtype=np.float64)


def strong_benefit(predicted: NDArray[np.float64], weak: int, strong: int) -> NDArray[np.float64]:
    """How much sending each prompt to the strong model is expected to gain."""
    return predicted[:, strong] - predicted[:, weak]


def choose_by_threshold(
    benefit: NDArray[np.float64], threshold: float, weak: int, strong: int
) -> NDArray[np.int64]:
    return np.where(benefit > threshold, strong, weak).astype(np.int64)


def threshold_for_share(benefit: Sequence[float] | NDArray[np.float64], share: float) -> float:
    """The threshold that sends about `share` of these prompts to the strong model
    (calibrate on held-out prompts, then route new ones with it)."""
    values = np.sort(np.asarray(benefit, dtype=np.float64))[::-1]
    if share <= 0:
        return float("inf")
    if share >= 1:
        return float("-inf")
    index = min(len(values) - 1, max(0, round(share * len(values)) - 1))
    return float(values[index]) - 1e-12


def blended_quality(
    prior: float | None, passed: int, failed: int, weight: float = 20.0
) -> float | None:
    """A catalog score updated by observed check results: the prior counts as `weight`
    pseudo-outcomes, so a handful of results nudge it and many results decide it."""
    seen = passed + failed
    if prior is None:
        return passed / seen if seen else None
    return (prior * weight + passed) / (weight + seen)
