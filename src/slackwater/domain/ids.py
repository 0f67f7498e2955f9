"""Prefixed identifiers that sort by creation time: `batch_…`, `file_…`, `key_…`.

24 hex digits: the millisecond the id was made, then 48 bits that are random at the
first id of each millisecond and grow by a random step after it. So ids made by one
process sort in creation order (lists page by id), while nothing in one id says how
many others were made, by this project or any other, or lets one be guessed from
another (docs/security.md).
"""

from __future__ import annotations

import secrets
import threading
import time

_lock = threading.Lock()
_last = (0, 0)  # (millisecond, suffix) of the last id made here
_SUFFIX_BITS = 48
_START_BITS = 46  # a fresh millisecond starts low enough to leave room for steps
_STEP_BITS = 24


def new_id(prefix: str) -> str:
    global _last
    millis = int(time.time() * 1000)
    with _lock:
        last_millis, last_suffix = _last
        if millis > last_millis:
            suffix = secrets.randbits(_START_BITS)
        else:  # the same millisecond (or the clock stepped back): keep going up
            millis = last_millis
            suffix = last_suffix + 1 + secrets.randbits(_STEP_BITS)
            if suffix >> _SUFFIX_BITS:  # used up: borrow the next millisecond
                millis, suffix = millis + 1, secrets.randbits(_START_BITS)
        _last = (millis, suffix)
    return f"{prefix}_{millis:012x}{suffix:012x}"
