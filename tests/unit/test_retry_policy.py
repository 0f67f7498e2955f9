from __future__ import annotations

from datetime import UTC, datetime, timedelta

from slackwater.domain.request import Outcome
from slackwater.policy.retry import RetryPolicy, retry_decision

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=4, base_seconds=2, max_seconds=5, jitter=0.5)


def test_success_and_client_errors_are_final() -> None:
    assert not retry_decision(Outcome(200, {}), 1, NOW, POLICY, 0.3).retry
    assert not retry_decision(Outcome.error(400, "bad"), 1, NOW, POLICY, 0.3).retry


def test_retryable_errors_back_off_exponentially_with_jitter_and_a_cap() -> None:
    error = Outcome.error(503, "busy", retryable=True)
    waits = [retry_decision(error, n, NOW, POLICY, 0.0).at for n in (1, 2, 3)]
    assert waits == [NOW + timedelta(seconds=s) for s in (2, 4, 5)]
    jittered = retry_decision(error, 1, NOW, POLICY, 0.99).at
    assert jittered is not None and NOW + timedelta(seconds=1) <= jittered < NOW + timedelta(
        seconds=2
    )


def test_attempts_run_out() -> None:
    error = Outcome.error(429, "slow down", retryable=True)
    assert retry_decision(error, 3, NOW, POLICY, 0.5).retry
    assert not retry_decision(error, 4, NOW, POLICY, 0.5).retry
