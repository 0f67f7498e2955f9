"""Turns: the lighter project goes first, and a long call yields between its steps."""

from __future__ import annotations

import asyncio

from slackwater.runtime.turns import Turns


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_project_that_used_the_model_least_goes_next() -> None:
    clock = Clock()
    turns = Turns(half_life_seconds=10, clock=clock)
    await turns.take("heavy")
    clock.now += 5  # heavy runs 5 s
    order: list[str] = []

    async def call(project: str) -> None:
        await turns.take(project)
        order.append(project)
        clock.now += 1
        turns.give()

    waiting = [asyncio.create_task(call(p)) for p in ("heavy", "heavy", "light")]
    await asyncio.sleep(0)
    turns.give()
    await asyncio.gather(*waiting)
    assert order == ["light", "heavy", "heavy"]  # light arrived last, went first
    light = turns.usage("light")
    assert turns.usage("heavy") > light > 0
    clock.now += 10
    assert abs(turns.usage("light") - light / 2) < 1e-9  # halved after one half-life


async def test_a_long_call_hands_its_turn_over_between_steps() -> None:
    clock = Clock()
    turns = Turns(clock=clock)
    log: list[str] = []
    go = asyncio.Event()

    async def long_call() -> None:
        await turns.take("flood")
        await go.wait()
        for step in range(3):
            await asyncio.sleep(0)  # the step runs in the engine's thread
            clock.now += 1
            log.append(f"flood {step}")
            await turns.between()
        turns.give()

    async def short_call() -> None:
        await turns.take("light")
        log.append("light")
        turns.give()

    flood = asyncio.create_task(long_call())
    await asyncio.sleep(0)
    light = asyncio.create_task(short_call())
    await asyncio.sleep(0)  # light is waiting for the turn
    go.set()
    await asyncio.gather(flood, light)
    assert log == ["flood 0", "light", "flood 1", "flood 2"]  # waited one step, not three
    assert not turns.holding()


async def test_between_keeps_the_turn_when_only_heavier_projects_wait() -> None:
    clock = Clock()
    turns = Turns(clock=clock)
    await turns.take("a")
    clock.now += 10
    turns.give()  # a has used 10 s
    await turns.take("b")
    waiting = asyncio.create_task(turns.take("a"))
    await asyncio.sleep(0)
    await turns.between()  # b has used less than a: b keeps the turn
    assert not waiting.done()
    turns.give()
    await waiting
    turns.give()


async def test_a_waiter_cancelled_is_skipped_and_the_turn_passes_on() -> None:
    turns = Turns()
    await turns.take("a")
    gone = asyncio.create_task(turns.take("b"))
    stays = asyncio.create_task(turns.take("c"))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    turns.give()
    await stays
    assert gone.cancelled()
    turns.give()
    assert not turns.holding()
