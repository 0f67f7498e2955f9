"""Whether and when a failed request runs again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from slackwater.domain.request import Outcome


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits about base * 2**(n-1) seconds."""

    max_attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 300.0
    jitter: float = 0.5  # the share of each delay that is random


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    at: datetime | None = None


def retry_decision(
    outcome: Outcome, attempts: int, now: datetime, policy: RetryPolicy, rand: float
) -> RetryDecision:
    """`attempts` counts runs so far, this one included; `rand` is uniform in [0, 1)."""
    if outcome.ok or not outcome.retryable or attempts >= policy.max_attempts:
        return RetryDecision(retry=False)
    return RetryDecision(retry=True, at=now + backoff(attempts, policy, rand))


def backoff(attempts: int, policy: RetryPolicy, rand: float) -> timedelta:
    """How long to wait after the `attempts`-th failure."""
    delay = min(policy.max_seconds, policy.base_seconds * 2 ** (attempts - 1))
    return timedelta(seconds=delay * (1 - policy.jitter * rand))
