"""Prefixed, sortable, random identifiers: `batch_…`, `file_…`, `req_…`."""

from __future__ import annotations

import os
import time


def new_id(prefix: str) -> str:
    """A 24-hex-digit id that sorts by creation time (ms) and then randomly."""
    millis = int(time.time() * 1000)
    return f"{prefix}_{millis:012x}{os.urandom(6).hex()}"
