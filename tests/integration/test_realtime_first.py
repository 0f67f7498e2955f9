"""A realtime call on a local model waits for one token of batch work, not for the batch:
the batch generation hands the model over between tokens and resumes unchanged."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from slackwater.config import ModelConfig
from slackwater.domain.batch import Endpoint
from slackwater.engines import create_engine
from slackwater.engines.baton import Baton
from slackwater.engines.transformers import TransformersEngine


@pytest.fixture
async def engine(tiny_llama: Path) -> AsyncIterator[TransformersEngine]:
    model = ModelConfig(
        name="tiny",
        engine="transformers",
        endpoints=[Endpoint.CHAT],
        options={"path": str(tiny_llama)},
        max_batch_size=4,
        context_window=512,
    ).to_model()
    engine = create_engine(model)
    assert isinstance(engine, TransformersEngine)
    await engine.start()
    yield engine
    await engine.close()


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": text}], **extra}


def texts(outcomes: list[Any]) -> list[str]:
    return [o.body["choices"][0]["message"]["content"] for o in outcomes]


async def holding(engine: TransformersEngine) -> None:
    """Until the batch holds the model."""
    for _ in range(2000):
        if engine.baton.held:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the batch never started")


async def test_a_realtime_call_goes_between_two_tokens_of_a_batch(
    engine: TransformersEngine,
) -> None:
    # Seeded sampling (one generate() call): it must come out as it would alone, though
    # the realtime call samples with the same random generator meanwhile.
    batch = [chat(f"tell me about {i}", max_tokens=400, temperature=0.9, seed=7) for i in range(4)]
    alone = await engine.run(Endpoint.CHAT, batch)

    async def between(_: str) -> None:
        await asyncio.sleep(0.01)  # what a stream or another tenant's turn costs

    held_back = engine.held_back_seconds
    running = asyncio.create_task(engine.run(Endpoint.CHAT, batch))
    await holding(engine)
    started = time.perf_counter()
    answered = await engine.run_in_steps(
        Endpoint.CHAT, chat("hi", max_tokens=16, temperature=0.7, seed=3), between
    )
    took = time.perf_counter() - started
    assert not running.done(), "the realtime call waited for the whole batch"
    assert answered.ok and answered.body["usage"]["completion_tokens"] > 0
    resumed = await running
    assert texts(resumed) == texts(alone)
    # The batch waited about as long as the call took (the ledger does not charge it
    # that time): all but the token in flight when the call came.
    assert 0.5 * took < engine.held_back_seconds - held_back < took + 0.5
    # The realtime call's own answer is the one it gets with the model to itself.
    again = await engine.run_in_steps(
        Endpoint.CHAT, chat("hi", max_tokens=16, temperature=0.7, seed=3), between
    )
    assert texts([again]) == texts([answered])


async def test_a_paused_batch_still_stops_when_its_caller_goes(
    engine: TransformersEngine,
) -> None:
    running = asyncio.create_task(
        engine.run(Endpoint.CHAT, [chat("long", max_tokens=400, temperature=0)] * 4)
    )
    await holding(engine)
    hold = asyncio.Event()

    async def between(_: str) -> None:
        await hold.wait()  # a realtime call in progress, between its steps, for a while

    call = asyncio.create_task(
        engine.run_in_steps(Endpoint.CHAT, chat("hi", max_tokens=32, temperature=0), between)
    )
    await asyncio.sleep(0.2)
    running.cancel()  # the batch, paused for the call, is given up
    with pytest.raises(asyncio.CancelledError):
        await running
    hold.set()
    assert (await call).ok
    # The model is free again: batch work runs.
    [after] = await engine.run(Endpoint.CHAT, [chat("again", max_tokens=4, temperature=0)])
    assert after.ok


async def test_batch_work_may_hand_over_between_layers_of_one_forward_pass(
    engine: TransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a CPU the first forward pass over a whole batch's prompts takes seconds: the
    # hand-over points are between its layers, not only between tokens.
    offered: list[str] = []

    def offer(stop: object = None) -> None:
        offered.append(threading.current_thread().name)

    monkeypatch.setattr(Baton, "wanted", property(lambda self: True))
    monkeypatch.setattr(engine.baton, "yield_to_urgent", offer)
    [one] = await engine.run(Endpoint.CHAT, [chat("x", max_tokens=1, temperature=0)])
    assert one.ok
    layers = engine._load()[2].config.num_hidden_layers
    # Before the generation, between each layer of its one forward pass, and after its
    # one token: all in the batch thread.
    assert len(offered) == layers + 2 and all(name.startswith("engine-tiny_") for name in offered)
    # A realtime call's own forward passes offer nothing.
    offered.clear()

    async def between(_: str) -> None:
        pass

    assert (await engine.run_in_steps(Endpoint.CHAT, chat("y", max_tokens=4), between)).ok
    assert offered == []
