"""Settings for long-running slackwater processes (server, worker, checking child)."""

from __future__ import annotations

import gc
import logging
import os
import threading

log = logging.getLogger(__name__)


def tune_collector() -> None:
    """Collect cyclic garbage far less often than Python's default.

    Every request makes short-lived objects (bodies, answers, rows) that hold no cycles
    and are freed by reference counting; with the default thresholds the young
    generation was still scanned every 700 allocations, and the older ones, holding
    everything loaded at start-up, every few thousand: a worker spent 1.9 s of a
    100,000-request run collecting (0.15 s after this). What start-up loaded is frozen
    out of the collector's sight.
    """
    gc.freeze()
    gc.set_threshold(20_000, 50, 1000)


def exit_after(seconds: float) -> threading.Timer:
    """Exit the process hard if it is still alive `seconds` from now: a stop must not wait
    on an engine call that cannot be interrupted (a native kernel, a stuck socket).
    Nothing is lost: work not recorded is leased again once its lease runs out."""

    def exit_now() -> None:
        log.error("still running %.0f s after being asked to stop: exiting", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()
    return timer
