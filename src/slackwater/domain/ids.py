"""Prefixed identifiers that sort by creation time: `batch_…`, `file_…`, `req_…`."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last = (0, 0)


def new_id(prefix: str) -> str:
    """24 hex digits: milliseconds, a sequence number within the millisecond, randomness.

    Ids made by one process sort in creation order; lists page by id.
    """
    global _last
    millis = int(time.time() * 1000)
    with _lock:
        sequence = _last[1] + 1 if millis <= _last[0] else 0
        millis = max(millis, _last[0])
        _last = (millis, sequence)
    return f"{prefix}_{millis:012x}{sequence & 0xFFFF:04x}{os.urandom(4).hex()}"
