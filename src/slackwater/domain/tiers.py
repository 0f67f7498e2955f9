"""Service tiers: how long a call may wait for its answer, by name.

A tier with no window is real time: the call is answered in the request, ahead of all
queued work. A tier with a window is a deadline: the call joins the same
earliest-deadline-first queue as batch lines, so it waits for a worker (and rides in its
engine batches) but never past its window. OpenAI's names mean what they mean there:
`auto`, `default` and `priority` are real time, `flex` may wait; `batch` waits as a
batch line would (24 hours).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from slackwater.domain.errors import InvalidRequest
from slackwater.domain.text import shown

DEFAULT = "default"
AUTO = "auto"  # the server's choice: its `default` tier, which the answer names


@dataclass(frozen=True)
class ServiceTier:
    name: str
    window_seconds: float  # 0: real time
    # Calls of the tier waiting in the queue past which a new one is refused (HTTP 429);
    # 0: no limit.
    max_queued: int = 0

    @property
    def realtime(self) -> bool:
        return self.window_seconds <= 0


def default_tiers() -> dict[str, ServiceTier]:
    return {
        tier.name: tier
        for tier in (
            ServiceTier(DEFAULT, 0),
            ServiceTier("priority", 0),
            ServiceTier("asap", 0),
            ServiceTier("standard", 300, max_queued=10_000),
            ServiceTier("flex", 900, max_queued=10_000),
            # Batch lines' own window and price: for calls (an agent session's, say) that
            # can wait as long as a batch would.
            ServiceTier("batch", 86_400),
        )
    }


def tier_named(tiers: Mapping[str, ServiceTier], name: object) -> ServiceTier:
    """The tier a call asks for (`default` when it names none); InvalidRequest names the
    field and the tiers there are."""
    if name is None or name == AUTO:
        return tiers[DEFAULT]
    if not isinstance(name, str) or name not in tiers:
        known = ", ".join([AUTO, *tiers])
        raise InvalidRequest(
            f"service_tier {shown(str(name))!r} is not one of this server's tiers ({known})",
            param="service_tier",
            code="invalid_value",
        )
    return tiers[name]
