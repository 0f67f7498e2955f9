"""A spare child process: started ahead of need, handed out once, replaced when dead."""

from __future__ import annotations

import sys

from slackwater.runtime import validation
from slackwater.runtime.spare import SpareProcess, stop

ECHO = (sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())")


async def echo(spares: SpareProcess, text: bytes) -> tuple[int, bytes]:
    process = await spares.take()
    out, _ = await process.communicate(text)
    return process.pid, out


async def test_take_hands_out_the_waiting_spare_once() -> None:
    spares = SpareProcess(*ECHO, limit=1024)
    await spares.refill()
    waiting = spares.waiting
    assert waiting is not None and waiting.returncode is None
    pid, out = await echo(spares, b"hello")
    assert (pid, out) == (waiting.pid, b"hello")
    assert spares.waiting is None
    second, out = await echo(spares, b"again")  # none waiting: one is started for it
    assert second != pid and out == b"again"
    await spares.close()


async def test_a_spare_that_died_is_replaced_not_handed_out() -> None:
    spares = SpareProcess(*ECHO, limit=1024)
    await spares.refill()
    dead = spares.waiting
    assert dead is not None
    await stop(dead)
    await spares.refill()  # a dead spare does not count as ready
    alive = spares.waiting
    assert alive is not None and alive.pid != dead.pid
    await stop(alive)
    pid, out = await echo(spares, b"still works")
    assert pid not in (dead.pid, alive.pid) and out == b"still works"
    await spares.close()


async def test_close_ends_the_spare_and_starts_no_more() -> None:
    spares = SpareProcess(*ECHO, limit=1024)
    await spares.refill()
    waiting = spares.waiting
    assert waiting is not None
    await spares.close()
    assert waiting.returncode is not None and spares.waiting is None
    await spares.refill()
    assert spares.waiting is None
    _, out = await echo(spares, b"on demand")
    assert out == b"on demand"


async def test_a_spare_checker_left_without_work_exits_quietly() -> None:
    spares = SpareProcess(sys.executable, "-m", validation.__name__, limit=1024)
    checker = await spares.take()
    assert checker.stdin is not None
    checker.stdin.close()  # as when the server dies before handing it a file
    out, _ = await checker.communicate()
    assert (checker.returncode, out) == (0, b"")
