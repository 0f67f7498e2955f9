from __future__ import annotations

import numpy as np
import pytest

from slackwater.policy.quality import LearnedRouter, NeighbourQuality, text_shape


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


def test_without_k_every_labelled_prompt_votes_by_similarity() -> None:
    vectors = unit([[1, 0], [0.6, 0.8], [0, 1]])
    outcomes = np.asarray([[1], [0], [0]], dtype=np.float32)
    nearest = NeighbourQuality(["m"], k=1, prior_weight=0.0)
    everyone = NeighbourQuality(["m"], prior_weight=0.0, temperature=1.0)
    for router in (nearest, everyone):
        router.observe(vectors, outcomes)
    assert nearest.predict(unit([[1, 0.1]]))[0, 0] == pytest.approx(1.0)
    shared = everyone.predict(unit([[1, 0.1]]))[0, 0]
    assert 1 / 3 < shared < 1.0  # the nearest counts most, the others still count
    # Leave-one-out: a prompt never votes for itself.
    alone = everyone.predict(vectors[:1], skip=np.asarray([0]))[0, 0]
    assert alone == pytest.approx(0.0)


def test_untried_models_do_not_count_and_outcomes_can_be_added_later() -> None:
    router = NeighbourQuality(["a", "b"], k=2, prior_weight=1.0)
    router.observe(unit([[1, 0]]), np.asarray([[1, np.nan]], dtype=np.float32))
    first = router.predict(unit([[1, 0]]))
    assert first[0, 0] == pytest.approx(1.0) and first[0, 1] == pytest.approx(0.0)
    router.observe(unit([[1, 0.01]]), np.asarray([[0, 1]], dtype=np.float32))
    second = router.predict(unit([[1, 0]]))
    assert second[0, 0] < first[0, 0] and second[0, 1] > first[0, 1]


def test_shapes_are_checked() -> None:
    router = NeighbourQuality(["a", "b"])
    with pytest.raises(ValueError, match="one row of outcomes per vector"):
        router.observe(unit([[1, 0]]), np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="no labelled prompts"):
        router.predict(unit([[1, 0]]))


def long_prompts_are_hard(n: int = 400) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Random directions carry no signal; in this data the weak model fails exactly the
    long prompts and the strong one answers everything."""
    rng = np.random.default_rng(1)
    vectors = unit(rng.normal(size=(n, 8)).tolist())
    lengths = rng.uniform(50, 2000, size=n)
    texts = ["word " * int(length // 5) for length in lengths]
    outcomes = np.column_stack([lengths <= 1000, np.ones(n)]).astype(np.float32)
    return vectors, texts, outcomes


def test_the_learned_router_finds_which_signal_matters() -> None:
    vectors, texts, outcomes = long_prompts_are_hard()
    hard = outcomes[300:, 0] == 0
    router = LearnedRouter.fit(["weak", "strong"], vectors[:300], texts[:300], outcomes[:300])
    assert router.models[router.reference] == "strong"
    predicted = router.predict(vectors[300:], texts[300:])
    assert predicted.shape == (100, 2) and ((predicted >= 0) & (predicted <= 1)).all()
    gap = predicted[:, 1] - predicted[:, 0]
    # A linear fit on log length ramps across the cut: nearly every hard prompt ranks
    # above nearly every easy one.
    ranked_above = (gap[hard][:, None] > gap[~hard][None, :]).mean()
    assert ranked_above > 0.95
    assert predicted[hard, 0].mean() < 0.3 < 0.7 < predicted[~hard, 0].mean()


def test_the_fitted_router_survives_a_round_trip_and_checks_its_shapes() -> None:
    vectors, texts, outcomes = long_prompts_are_hard(60)
    outcomes = np.column_stack([outcomes, np.full(60, np.nan, dtype=np.float32)])
    router = LearnedRouter.fit(["weak", "strong", "untried"], vectors, texts, outcomes)
    neighbours = NeighbourQuality(router.models)
    neighbours.observe(vectors, outcomes)
    again = LearnedRouter.from_arrays(neighbours, router.arrays())
    assert np.allclose(again.predict(vectors, texts), router.predict(vectors, texts))
    with pytest.raises(ValueError, match="do not fit this router"):
        LearnedRouter.from_arrays(neighbours, {**router.arrays(), "gains": np.zeros((2, 5))})
    with pytest.raises(ValueError, match="one text per vector"):
        LearnedRouter.fit(["weak", "strong"], vectors, texts[:-1], outcomes[:, :2])


def test_text_shape_sees_length_capitals_and_compound_questions() -> None:
    plain, shouty, compound = text_shape(
        ["what is a cat", "WHAT IS A CAT", "Statement 1| a cat is red. Statement 2| so is a dog"]
    )
    assert plain[0] == pytest.approx(np.log(13)) and plain[1] == 0 and plain[2] == 0
    assert shouty[1] == pytest.approx(10 / 13)
    assert compound[2] == 1


def test_blended_quality_moves_from_the_prior_to_the_evidence() -> None:
    from slackwater.policy.quality import blended_quality

    assert blended_quality(0.7, 0, 0) == pytest.approx(0.7)
    assert blended_quality(0.7, 0, 10, weight=20) == pytest.approx(14 / 30)
    assert blended_quality(0.7, 1000, 0, weight=20) > 0.99
    assert blended_quality(None, 3, 1) == pytest.approx(0.75)
    assert blended_quality(None, 0, 0) is None
