from __future__ import annotations

import numpy as np
import pytest

from slackwater.policy.quality import (
    NeighbourQuality,
    choose_by_threshold,
    strong_benefit,
    threshold_for_share,
)


def unit(rows: list[list[float]]) -> np.ndarray:
    matrix = np.asarray(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_neighbours_decide_and_the_prior_fills_in() -> None:
    # Prompts near +x are hard for the weak model; prompts near +y are easy for both.
    vectors = unit([[1, 0.01], [1, 0.02], [1, -0.01], [0.01, 1], [0.02, 1], [-0.01, 1]])
    outcomes = np.asarray([[0, 1]] * 3 + [[1, 1]] * 3, dtype=np.float32)
    router = NeighbourQuality(["weak", "strong"], k=3, temperature=0.05, prior_weight=0.5)
    router.observe(vectors, outcomes)
    predicted = router.predict(unit([[1, 0], [0, 1]]))
    assert predicted[0, 0] < 0.3 and predicted[0, 1] > 0.9
    assert predicted[1, 0] > 0.7 and predicted[1, 1] > 0.9
    benefit = strong_benefit(predicted, 0, 1)
    assert list(choose_by_threshold(benefit, 0.3, 0, 1)) == [1, 0]


def test_untried_models_do_not_count_and_outcomes_can_be_added_later() -> None:
    router = NeighbourQuality(["a", "b"], k=2, prior_weight=1.0)
    router.observe(unit([[1, 0]]), np.asarray([[1, np.nan]], dtype=np.float32))
    first = router.predict(unit([[1, 0]]))
    assert first[0, 0] == pytest.approx(1.0) and first[0, 1] == pytest.approx(0.0)
    router.observe(unit([[1, 0.01]]), np.asarray([[0, 1]], dtype=np.float32))
    second = router.predict(unit([[1, 0]]))
    assert second[0, 0] < first[0, 0] and second[0, 1] > first[0, 1]


def test_threshold_for_share_sends_that_share_to_strong() -> None:
    benefit = np.linspace(-1, 1, 101)
    for share in (0.0, 0.1, 0.5, 0.9, 1.0):
        sent = (benefit > threshold_for_share(benefit, share)).mean()
        assert sent == pytest.approx(share, abs=0.011)


def test_shapes_are_checked() -> None:
    router = NeighbourQuality(["a", "b"])
    with pytest.raises(ValueError, match="one row of outcomes per vector"):
        router.observe(unit([[1, 0]]), np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="no labelled prompts"):
        router.predict(unit([[1, 0]]))


def test_strong_or_weak_learns_which_signal_matters() -> None:
    from slackwater.policy.quality import StrongOrWeak

    rng = np.random.default_rng(1)
    vectors = unit(rng.normal(size=(400, 8)).tolist())
    lengths = rng.uniform(50, 2000, size=400)
    hard = lengths > 1000  # in this data, long prompts are the ones the weak model fails
    texts = ["word " * int(n // 5) for n in lengths]
    outcomes = np.column_stack([~hard, np.ones(400)]).astype(np.float32)
    router = StrongOrWeak(["weak", "strong"])
    with pytest.raises(ValueError, match="fit the router"):
        router.score(vectors[:1], texts[:1])
    router.fit(vectors[:300], texts[:300], outcomes[:300])
    scores = router.score(vectors[300:], texts[300:])
    assert scores[hard[300:]].min() > scores[~hard[300:]].mean()


def test_blended_quality_moves_from_the_prior_to_the_evidence() -> None:
    from slackwater.policy.quality import blended_quality

    assert blended_quality(0.7, 0, 0) == pytest.approx(0.7)
    assert blended_quality(0.7, 0, 10, weight=20) == pytest.approx(14 / 30)
    assert blended_quality(0.7, 1000, 0, weight=20) > 0.99
    assert blended_quality(None, 3, 1) == pytest.approx(0.75)
    assert blended_quality(None, 0, 0) is None
