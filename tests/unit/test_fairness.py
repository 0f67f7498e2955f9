"""Leasing order arithmetic: deadline steps, and start-time fair queuing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from slackwater.policy import fairness

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_deadlines_within_one_step_are_equally_urgent() -> None:
    step = timedelta(seconds=fairness.URGENCY_STEP_SECONDS)
    assert fairness.urgency(T0) == fairness.urgency(T0 + step - timedelta(seconds=1))
    assert fairness.urgency(T0 + step) == fairness.urgency(T0) + 1


def test_an_idle_project_starts_at_the_queues_virtual_time() -> None:
    # A project that queued 1,000 lines long ago cannot bank them: it starts now.
    assert fairness.batch_start(project_next=1_000, virtual_time=50_000) == 50_000
    # One whose last batch still runs ahead of the queue continues after it.
    assert fairness.batch_start(project_next=60_000, virtual_time=50_000) == 60_000


def test_two_projects_batches_interleave_line_by_line() -> None:
    big = fairness.batch_start(0, 0)
    after_big = fairness.project_next(big, last_line=1_000_000)
    small = fairness.batch_start(0, virtual_time=0)
    ranks = sorted([(big + line, "big") for line in range(1, 4)] + [(small + 1, "small")])
    assert [owner for _, owner in ranks][:2] == ["big", "small"]
    assert after_big == 1_000_001
    assert fairness.advanced(10, reached=7) == 10 and fairness.advanced(10, reached=12) == 12
