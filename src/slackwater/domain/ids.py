"""Prefixed identifiers that sort by creation time: `batch_…`, `file_…`, `req_…`."""

from __future__ import annotations

import random
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
    # `random` is reseeded in forked children; the suffix tells processes apart, it is
    # not a secret (objects are scoped by project), so it needs no system call.
    return f"{prefix}_{millis:012x}{sequence & 0xFFFF:04x}{random.getrandbits(32):08x}"
