"""Micro-batching: the step-time model and when a worker waits for a fuller batch."""

from __future__ import annotations

import pytest

from slackwater.policy.batching import Gather, StepTime, wait_seconds


def measured(fixed: float = 0.4, per_item: float = 0.05) -> StepTime:
    step = StepTime()
    for size in (1, 4, 8, 16, 2):
        step.add(size, fixed + per_item * size)
    return step


def test_the_step_time_is_fitted_to_recent_steps() -> None:
    step = measured()
    fixed, per_item = step.fit() or (0, 0)
    assert fixed == pytest.approx(0.4) and per_item == pytest.approx(0.05)
    assert step.seconds(10) == pytest.approx(0.9)
    assert StepTime().fit() is None
    same = StepTime()
    same.add(4, 1.0)
    same.add(4, 1.2)
    # One size only: no line to fit; all of a step counts as fixed.
    assert same.fit() == pytest.approx((1.1, 0.0))
    small = StepTime(window=2)
    for size in (1, 2, 3):
        small.add(size, float(size))
    assert [x for x, _ in small.samples] == [2, 3]


def gather(**given: object) -> Gather:
    values: dict[str, object] = {
        "pending": 3, "max_batch": 16, "waited": 0.0, "slack": 60.0, "arrived": 0,
    }  # fmt: skip
    values.update(given)
    return Gather(**values)  # type: ignore[arg-type]


def test_a_worker_waits_only_while_it_pays() -> None:
    step = measured()
    # Part full, arriving, time to spare: wait a quarter of the fixed cost.
    assert wait_seconds(gather(), step, max_wait=0.5, look=0.02) == pytest.approx(0.1)
    # Full, empty, or waiting switched off: run now.
    assert wait_seconds(gather(pending=16), step, 0.5, 0.02) == 0
    assert wait_seconds(gather(pending=0), step, 0.5, 0.02) == 0
    assert wait_seconds(gather(), step, 0.0, 0.02) == 0
    # Nothing measured yet: max_wait bounds the wait, a quarter of it at a time.
    assert wait_seconds(gather(), StepTime(), 0.5, 0.02) == pytest.approx(0.125)
    assert wait_seconds(gather(waited=0.45, arrived=30), StepTime(), 0.5, 0.02) == (
        pytest.approx(0.05)
    )
    # Waiting goes on while, at the rate they came, more would come in the time left:
    # 1 in 0.1 s, 0.3 s left: yes; 1 in 0.3 s, 0.1 s left: no; none came: no.
    assert wait_seconds(gather(waited=0.1, arrived=1), step, 0.5, 0.02) == pytest.approx(0.1)
    assert wait_seconds(gather(waited=0.3, arrived=1), step, 0.5, 0.02) == 0
    assert wait_seconds(gather(waited=0.1, arrived=0), step, 0.5, 0.02) == 0
    # Never more than the fixed cost, or max_wait, in all.
    assert wait_seconds(gather(waited=0.35, arrived=9), step, 0.5, 0.02) == pytest.approx(0.05)
    assert wait_seconds(gather(waited=0.4, arrived=9), step, 0.5, 0.02) == 0
    assert wait_seconds(gather(waited=0.15, arrived=9), step, 0.2, 0.02) == pytest.approx(0.05)
    # Never into the time the most urgent request needs to finish (a full step: 1.2 s).
    assert wait_seconds(gather(slack=1.25), step, 0.5, 0.02) == pytest.approx(0.05)
    assert wait_seconds(gather(slack=1.0), step, 0.5, 0.02) == 0
    # A fast engine has little fixed cost: it barely waits.
    assert wait_seconds(gather(), measured(fixed=0.004), 0.5, 0.001) == pytest.approx(0.001)
