"""The cascade: a routed answer that fails its check runs again on the next model up
the route's ladder (cheapest first), one that has not been tried; the best model's
answer stands, check failure and all. No I/O."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from slackwater.domain.request import Usage
from slackwater.domain.route import Attempt, RouteRecord


def escalate(route: RouteRecord, failure: str, cost: Decimal, usage: Usage) -> RouteRecord | None:
    """The route on the next model up, with this attempt recorded; None at the top."""
    current = route.model
    tried = {a.model for a in route.attempts} | {current}
    higher = route.ladder[route.ladder.index(current) + 1 :] if current in route.ladder else ()
    following = [name for name in higher if name not in tried]
    if not following:
        return None
    attempt = Attempt(
        model=current,
        failed_check=failure,
        cost_usd=str(cost),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )
    return replace(
        route,
        model=following[0],
        attempts=(*route.attempts, attempt),
        reason=f"escalated: {current}'s answer failed a check ({failure})",
    )
