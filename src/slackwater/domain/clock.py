"""Time helpers: everything is UTC-aware; the API speaks Unix seconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from slackwater.domain.errors import InvalidRequest

_WINDOW = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_WINDOW = timedelta(minutes=1)
MAX_WINDOW = timedelta(days=7)


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def parse_duration(text: str, param: str) -> timedelta:
    """`30s`, `90m`, `24h`, `2d`: a whole number and a unit."""
    match = _WINDOW.match(text) if isinstance(text, str) else None
    if not match:
        raise InvalidRequest(
            f"{param} {text!r} is not a duration like '24h', '30m' or '2d'", param=param
        )
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


def parse_completion_window(text: str) -> timedelta:
    """`24h`, `90m`, `2d`… between 1 minute and 7 days, as OpenAI's `completion_window`."""
    window = parse_duration(text, "completion_window")
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise InvalidRequest(
            f"completion_window {text!r} must be between 1m and 7d", param="completion_window"
        )
    return window
