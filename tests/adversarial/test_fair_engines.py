"""Finding 2, its other half: a tenant flooding a model with maximum-length prompts held
it away from everyone else (their calls queued behind the whole flood)."""

from __future__ import annotations

import statistics
import threading
import time

from tests.adversarial.conftest import Target, Tenant

FLOOD_THREADS = 6


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def small_calls(tenant: Tenant, count: int) -> list[float]:
    """A light tenant's calls: small, with a pause between them (a tenant that keeps a
    model busy on its own is a heavy one, and is given its fair share, not more)."""
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 32,
        "temperature": 0,
    }
    took = []
    with tenant.client() as api:
        api.post("/chat/completions", json=body)  # warm the connection
        for _ in range(count):
            time.sleep(0.1)
            started = time.perf_counter()
            answer = api.post("/chat/completions", json=body)
            took.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
    return took


def test_a_flood_of_longest_prompts_does_not_hold_the_model_from_others(target: Target) -> None:
    before = small_calls(target.b, 40)
    # As long as the model's context allows: ~380 prompt tokens and 100 to write.
    longest = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "lorem ipsum dolor sit amet " * 25}],
        "max_tokens": 100,
        "temperature": 0,
    }
    stop = threading.Event()
    flooded = [0]
    refused: list[str] = []  # A's answers other than an answer or "slow down"

    def flood() -> None:
        with target.a.client() as api:
            while not stop.is_set():
                answer = api.post("/chat/completions", json=longest)
                if answer.status_code not in (200, 429):
                    refused.append(f"{answer.status_code} {answer.text}")
                flooded[0] += 1

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(FLOOD_THREADS)]
    for thread in threads:
        thread.start()
    time.sleep(1)  # the flood is under way
    try:
        during = small_calls(target.b, 40)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    after = small_calls(target.b, 40)
    # B alone, measured on both sides of the flood: the machine's own noise counts once.
    alone = max(before, after, key=p95)
    print(
        f"\ntenant B p95 alone {p95(alone) * 1000:.0f} ms, under A's flood "
        f"{p95(during) * 1000:.0f} ms ({p95(during) / p95(alone):.2f}x); "
        f"A's calls answered meanwhile: {flooded[0]}"
    )
    assert not refused, refused[:3]
    assert flooded[0] >= 10  # A is served too, not shut out
    assert p95(during) <= 2 * p95(alone)
