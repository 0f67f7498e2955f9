"""Predicted quality: each model's chance of answering a prompt well, learned from outcomes.

A similarity-weighted vote over prompt embeddings (unit vectors, e.g. from the local
MiniLM): for a new prompt, the labelled prompts vote with weights
exp(similarity / temperature), shrunk towards each model's overall success rate
(`NeighbourQuality`); `LearnedRouter` then fits, on the same labelled prompts, how much
the best model gains over each other one, from that vote and the prompt's shape. No I/O:
embeddings come in as arrays. Outcomes can be added at any time (`observe`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]


@dataclass
class NeighbourQuality:
    models: list[str]
    # None: every labelled prompt votes, weighted by similarity. Prompts from a topic the
    # router never saw have no close neighbours; a wide, smooth vote generalises best
    # (docs/routing.md has the comparison).
    k: int | None = None
    temperature: float = 0.1
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
        filled = np.where(known, outcomes, 0.0).astype(np.float64)
        seen = known.astype(np.float64)
        prior = filled.sum(0) / np.maximum(seen.sum(0), 1)
        size = matrix.shape[0]
        k = size if self.k is None else min(self.k, size)
        result = np.empty((queries.shape[0], len(self.models)))
        for start in range(0, queries.shape[0], 256):
            sims = np.asarray(queries[start : start + 256] @ matrix.T, dtype=np.float64)
            if skip is not None:
                rows = np.arange(len(sims))
                own = skip[start : start + len(sims)]
                sims[rows[own >= 0], own[own >= 0]] = -np.inf
            if k < size:
                kth = np.partition(sims, size - k, axis=1)[:, size - k : size - k + 1]
                sims = np.where(sims >= kth, sims, -np.inf)
            weights = np.exp((sims - sims.max(1, keepdims=True)) / self.temperature)
            result[start : start + len(sims)] = (weights @ filled + self.prior_weight * prior) / (
                weights @ seen + self.prior_weight
            )
        return result


SHAPE = ("log length", "capital share", "compound")


def text_shape(texts: Sequence[str]) -> NDArray[np.float64]:
    """Per prompt: log length (longer questions are harder), the share of capitals
    (formulas, symbols and acronyms: technical questions, where weak models fall behind)
    and whether it has a `|` separator, the usual way to set out several statements to
    judge at once ('Statement 1 | ... Statement 2 | ...'): weak models get such
    compound questions wrong more often than single ones."""
    out = np.empty((len(texts), len(SHAPE)))
    for i, text in enumerate(texts):
        n = max(len(text), 1)
        out[i, 0] = np.log(n)
        out[i, 1] = sum(c.isupper() for c in text) / n
        out[i, 2] = float("|" in text)
    return out


@dataclass
class LearnedRouter:
    """Each model's chance of answering a prompt well, fitted so that the differences
    between models rank prompts by what a better model gains on them.

    The reference is the model with the best record. Its chance comes from the
    neighbours; every other model's is the reference's less a fitted *gain*: a ridge
    regression, on the labelled prompts, of (reference right - model right) on the
    neighbours' estimate of that gain (leave-one-out, so the fit sees estimates as
    honest as a new prompt's) and the prompt's shape (`text_shape`). Fitting the gain
    itself ranks prompts far better than fitting each model's chance apart and
    subtracting (docs/routing.md). New outcomes can be added to the neighbours at any
    time; the gain weights stay as fitted.
    """

    neighbours: NeighbourQuality
    reference: int
    shape_mean: NDArray[np.float64]
    shape_scale: NDArray[np.float64]
    gains: NDArray[np.float64]  # per model: weights of [neighbour gain, *shape, 1]

    @property
    def models(self) -> list[str]:
        return self.neighbours.models

    @classmethod
    def fit(
        cls,
        models: list[str],
        vectors: Vectors,
        texts: Sequence[str],
        outcomes: NDArray[np.float32],
        ridge: float = 1.0,
    ) -> LearnedRouter:
        if len(texts) != len(vectors):
            raise ValueError("one text per vector")
        neighbours = NeighbourQuality(models)
        neighbours.observe(vectors, outcomes)
        known = ~np.isnan(outcomes)
        tried = known.sum(0)
        rates = np.where(known, outcomes, 0).sum(0) / np.maximum(tried, 1)
        reference = int(np.argmax(np.where(tried > 0, rates, -1.0)))
        shape = text_shape(texts)
        mean, scale = shape.mean(0), np.where(shape.std(0) > 0, shape.std(0), 1.0)
        loo = neighbours.predict(vectors, skip=np.arange(len(vectors), dtype=np.int64))
        gains = np.zeros((len(models), len(SHAPE) + 2))
        for m in range(len(models)):
            target = outcomes[:, reference].astype(np.float64) - outcomes[:, m]
            usable = ~np.isnan(target)
            if m == reference or not usable.any():
                continue
            gap = loo[usable, reference] - loo[usable, m]
            x = _gain_features(gap, (shape[usable] - mean) / scale)
            gains[m] = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ target[usable])
        return cls(neighbours, reference, mean, scale, gains)

    def predict(self, vectors: Vectors, texts: Sequence[str]) -> NDArray[np.float64]:
        """P(success) per prompt (rows) and model (columns)."""
        near = self.neighbours.predict(vectors)
        shape = (text_shape(texts) - self.shape_mean) / self.shape_scale
        best = near[:, [self.reference]]
        gap = np.column_stack(
            [
                _gain_features(best[:, 0] - near[:, m], shape) @ self.gains[m]
                for m in range(len(self.models))
            ]
        )
        # The reference's own gain weights are zero: its prediction is the neighbours'.
        return np.asarray(np.clip(best - gap, 0.0, 1.0), dtype=np.float64)

    def arrays(self) -> dict[str, NDArray[Any]]:
        """The fitted weights, to save beside the labelled prompts."""
        return {
            "reference": np.asarray(self.reference),
            "shape_mean": self.shape_mean,
            "shape_scale": self.shape_scale,
            "gains": self.gains,
        }

    @classmethod
    def from_arrays(
        cls, neighbours: NeighbourQuality, arrays: Mapping[str, NDArray[Any]]
    ) -> LearnedRouter:
        gains = np.asarray(arrays["gains"], dtype=np.float64)
        if gains.shape != (len(neighbours.models), len(SHAPE) + 2):
            raise ValueError(f"gain weights of shape {gains.shape} do not fit this router")
        return cls(
            neighbours,
            int(arrays["reference"]),
            np.asarray(arrays["shape_mean"], dtype=np.float64),
            np.asarray(arrays["shape_scale"], dtype=np.float64),
            gains,
        )


def _gain_features(gap: NDArray[np.float64], shape: NDArray[np.float64]) -> NDArray[np.float64]:
    """The regressors of a model's gain: the neighbours' estimate, the scaled shape, 1."""
    return np.column_stack([gap, shape, np.ones(len(gap))])


def blended_quality(
    prior: float | None, passed: int, failed: int, weight: float = 20.0
) -> float | None:
    """A catalog score updated by observed check results: the prior counts as `weight`
    pseudo-outcomes, so a handful of results nudge it and many results decide it."""
    seen = passed + failed
    if prior is None:
        return passed / seen if seen else None
    return (prior * weight + passed) / (weight + seen)
