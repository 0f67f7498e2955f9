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


def die_with_parent() -> None:
    """In a process an engine spawned (vLLM's engine core and its workers), as it runs
    the main module again: be killed when the process that started it dies, however it
    dies. Otherwise a SIGKILLed worker leaves its engine behind, holding the memory (a
    GPU's) that the restarted worker then cannot get. Linux only (prctl
    PR_SET_PDEATHSIG); anywhere else, and in any other process, nothing."""
    import signal
    import sys

    # Set (by runpy) only while a spawned process runs its parent's main module.
    if "__mp_main__" not in sys.modules or not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("could not ask to die with the parent process (errno %d)", ctypes.get_errno())
        return
    if os.getppid() != parent:  # it died while we asked
        os._exit(1)
