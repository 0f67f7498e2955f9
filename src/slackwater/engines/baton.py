"""Baton: who runs a local model now, with realtime calls first at every token.

A local model runs one thing at a time. Batch work (a whole engine batch, hundreds of
tokens long) runs in one thread and realtime calls, in steps of a few tokens, in
another; only the holder of the baton computes. A realtime call in progress (between
its steps too) makes the batch work hand the baton over at its next pause point
(`yield_to_urgent`: between tokens, and between the network's layers) and wait there,
its KV cache and random state untouched, until no realtime call is left. So a realtime
call waits for one layer of batch work, not for the batch: what real-time serving with
batch work beside it needs, and what an engine with continuous batching gives for free.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

_POLL_SECONDS = 0.1  # how often a waiting batch looks at its stop flag (set elsewhere)


class Baton:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False  # someone computes with the model
        self._urgent = 0  # realtime calls in progress, computing or between steps
        # Seconds batch work has waited for realtime calls, all told: not its own compute
        # (the ledger charges a batch step its time less this).
        self.yielded_seconds = 0.0

    @contextlib.contextmanager
    def urgent_call(self) -> Iterator[None]:
        """For the whole of a realtime call: batch work pauses until it ends."""
        with self._cond:
            self._urgent += 1
        try:
            yield
        finally:
            with self._cond:
                self._urgent -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def urgent_step(self) -> Iterator[None]:
        """One step of a realtime call (in its thread): waits for the token in flight."""
        with self._cond:
            self._cond.wait_for(lambda: not self._busy)
            self._busy = True
        try:
            yield
        finally:
            self._release()

    @contextlib.contextmanager
    def batch(self, stop: threading.Event | None = None) -> Iterator[None]:
        """Batch work (in its thread): starts when no realtime call is in progress."""
        self._take_when_clear(stop)
        try:
            yield
        finally:
            self._release()

    @property
    def held(self) -> bool:
        """Whether something computes with the model now."""
        return self._busy

    @property
    def wanted(self) -> bool:
        """Whether a realtime call is in progress (read without the lock: a call that
        starts just now waits one more token)."""
        return bool(self._urgent)

    def yield_to_urgent(self, stop: threading.Event | None = None) -> None:
        """Between two tokens of batch work: if a realtime call is in progress, hand the
        model over and take it back once none is (or once `stop` is set)."""
        if not self.wanted:
            return
        self._release()
        self._take_when_clear(stop)

    def _take_when_clear(self, stop: threading.Event | None) -> None:
        started = time.perf_counter()

        def stopped() -> bool:
            return stop is not None and stop.is_set()

        # A stopping batch still waits for the realtime step computing now (one step),
        # but no longer for the realtime calls: it ends at this token, computing nothing.
        with self._cond:
            while not self._cond.wait_for(
                lambda: not self._busy and (not self._urgent or stopped()),
                timeout=_POLL_SECONDS,
            ):
                pass
            self._busy = True
        self.yielded_seconds += time.perf_counter() - started

    def _release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()
