"""Online calls gathered into engine calls: calls that come together share one, up to the
row limit; each gets its own answer and its share of the engine's time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from slackwater.domain.request import Outcome, Usage
from slackwater.runtime.microbatch import MicroBatcher, wait_seconds


def engine() -> tuple[list[int], Any]:
    sizes: list[int] = []

    async def run(bodies: list[dict[str, Any]]) -> list[Outcome]:
        sizes.append(sum(len(b["inputs"]) for b in bodies))
        await asyncio.sleep(0.01)
        return [Outcome(200, {"echo": b["inputs"]}, Usage(len(b["inputs"]), 0)) for b in bodies]

    return sizes, run


async def test_calls_that_come_together_share_engine_calls_up_to_the_row_limit() -> None:
    sizes, run = engine()
    batcher = MicroBatcher(run, max_rows=8, max_latency=0.2, mode="fixed")
    bodies = [{"inputs": [[i]]} for i in range(10)] + [{"inputs": [[10], [11], [12]]}]
    answers = await asyncio.gather(*(batcher.submit(b) for b in bodies))
    assert [a[0].body["echo"] for a in answers] == [b["inputs"] for b in bodies]
    assert sizes == [8, 5] and batcher.calls == 2  # never more rows than the limit
    # Each call's share of its engine call's time is by its rows.
    first_call = [share for _, share in answers[:8]]
    assert len(set(first_call)) == 1 and answers[10][1] == pytest.approx(3 * answers[8][1])


async def test_off_never_waits_and_calls_during_a_run_go_in_the_next() -> None:
    sizes, run = engine()
    batcher = MicroBatcher(run, max_rows=64, max_latency=5, mode="off")
    first = asyncio.create_task(batcher.submit({"inputs": [[0]]}))
    await asyncio.sleep(0)  # the first call's engine call has started
    rest = [asyncio.create_task(batcher.submit({"inputs": [[i]]})) for i in range(1, 4)]
    await asyncio.gather(first, *rest)
    assert sizes == [1, 3]


async def test_an_engine_failure_reaches_every_call_of_its_batch() -> None:
    async def broken(bodies: list[dict[str, Any]]) -> list[Outcome]:
        raise RuntimeError("engine died")

    batcher = MicroBatcher(broken, max_rows=8, max_latency=0.01, mode="fixed")
    results = await asyncio.gather(
        *(batcher.submit({"inputs": [[i]]}) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)


def test_the_wait_is_bounded_by_the_limit_and_adaptive_by_the_step() -> None:
    assert wait_seconds("fixed", 0.01, 0.5) == 0.01
    assert wait_seconds("adaptive", 0.01, 0.002) == 0.002
    assert wait_seconds("adaptive", 0.01, 0.5) == 0.01  # never past the limit
    assert wait_seconds("adaptive", 0.01, None) == 0.01  # nothing measured yet
    assert wait_seconds("off", 0.01, 0.5) == 0.0
    with pytest.raises(ValueError, match="not one of"):
        MicroBatcher(engine()[1], max_rows=1, max_latency=0, mode="sometimes")
