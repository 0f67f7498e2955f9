"""A child process started ahead of need, so that taking one costs no interpreter start.

Starting Python and importing the checker takes ~0.1 s of one core: as much as checking
10,000 lines. A spare that has already done so waits, blocked on its stdin, until it is
taken; the next is started when the taker is done with it, so starting one never
competes with the work it is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from asyncio.subprocess import PIPE, Process

log = logging.getLogger(__name__)


class SpareProcess:
    def __init__(self, *argv: str, limit: int) -> None:
        self.argv = argv
        self.limit = limit  # the stream reader's buffer limit, as in create_subprocess_exec
        self._spare: Process | None = None
        self._closed = False

    @property
    def waiting(self) -> Process | None:
        """The spare ready to be taken, if any."""
        return self._spare

    async def take(self) -> Process:
        """The spare, if one is ready and alive; else a process started now."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.returncode is None:
            return spare
        if spare is not None:
            log.warning("the spare process had stopped (exit code %s)", spare.returncode)
        return await self._start()

    async def refill(self) -> None:
        """Start the next spare, unless one is ready or the spares are closed."""
        if self._closed or (self._spare is not None and self._spare.returncode is None):
            return
        try:
            self._spare = await self._start()
        except OSError:  # `take` tries again, and raises then
            log.exception("could not start a spare process")

    async def close(self) -> None:
        """End the waiting spare; later `take`s still start processes, `refill`s do not."""
        self._closed = True
        spare, self._spare = self._spare, None
        if spare is not None:
            await stop(spare)

    async def _start(self) -> Process:
        return await asyncio.create_subprocess_exec(
            *self.argv, stdin=PIPE, stdout=PIPE, limit=self.limit
        )


async def stop(process: Process) -> None:
    """Kill `process` if it still runs, and reap it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.wait()
