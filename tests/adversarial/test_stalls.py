"""Finding 2 (high): one 400,000-token prompt to a 512-token model held the model for
every tenant for minutes, kept running after its caller left, and SIGTERM could not stop
the server. Finding 3: realtime calls did not check max_tokens against the context."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.adversarial.conftest import Target, launch


def chat(model: str, text: str, **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_a_prompt_past_the_context_is_refused_before_any_engine_work(target: Target) -> None:
    huge = "lorem ipsum dolor sit amet " * 80_000  # ~400,000 tokens
    with target.a.client() as a, target.b.client() as b:
        started = time.monotonic()
        refused = a.post("/chat/completions", json=chat("tiny", huge, max_tokens=8))
        took = time.monotonic() - started
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
        assert "context window of 512" in error["message"]
        assert took < 5
        # Just over the window, counted by the model's own tokenizer: refused too.
        over = a.post("/chat/completions", json=chat("tiny", "word " * 600, max_tokens=8))
        assert over.status_code == 400 and "tokens and max_tokens is 8" in over.text
        # The other tenant's small call is answered at once.
        started = time.monotonic()
        small = b.post("/chat/completions", json=chat("tiny", "hello", max_tokens=4))
        assert small.status_code == 200 and time.monotonic() - started < 10


def test_max_tokens_past_the_context_is_refused_in_real_time(target: Target) -> None:
    with target.a.client() as a:
        answer = a.post("/chat/completions", json=chat("tiny", "hi", max_tokens=1_000_000_000))
    assert answer.status_code == 400 and answer.json()["error"]["code"] == (
        "context_length_exceeded"
    )


def test_batch_lines_past_the_context_fail_validation_by_line(target: Target) -> None:
    lines = [
        {
            "custom_id": "ok",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": chat("tiny", "short", max_tokens=8),
        },
        {
            "custom_id": "long",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": chat("tiny", "word " * 2_000, max_tokens=8),
        },
    ]
    raw = "".join(json.dumps(line) + "\n" for line in lines).encode()
    with target.a.client() as a:
        file = a.post("/files", files={"file": ("in.jsonl", raw)}, data={"purpose": "batch"})
        batch = a.post(
            "/batches",
            json={
                "input_file_id": file.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "1h",
            },
        ).json()
        while batch["status"] == "validating":
            time.sleep(0.1)
            batch = a.get(f"/batches/{batch['id']}").json()
    assert batch["status"] == "failed"
    [error] = batch["errors"]["data"]
    assert (error["line"], error["code"], error["param"]) == (
        2,
        "context_length_exceeded",
        "body.messages",
    )


def test_a_callers_engine_work_stops_when_it_goes_away(target: Target) -> None:
    marker = f"gone-{time.monotonic_ns()}"
    # The caller gives up after 1 s; the engine call would take 5 s.
    with target.a.client(timeout=1) as a, contextlib.suppress(httpx.TimeoutException):
        a.post("/chat/completions", json=chat("slow", "x", user=marker))
    time.sleep(6)
    seen = target.calls.read_text() if target.calls.exists() else ""
    assert marker not in seen  # cancelled before the engine answered
    assert "realtime caller went away" in target.server.log.read_text()


def test_sigterm_stops_the_server_within_the_drain_time(tmp_path: Path, tiny_llama: Path) -> None:
    server, (key, _), _ = launch(tmp_path, tiny_llama, drain=3)
    headers = {"Authorization": f"Bearer {key}"}
    # A call stuck in an engine thread that nothing can interrupt.
    stuck = subprocess.Popen(
        [
            "curl",
            "-s",
            "-m",
            "60",
            "-H",
            f"Authorization: Bearer {key}",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps(chat("stuck", "x")),
            server.url + "/v1/chat/completions",
        ]
    )
    time.sleep(1)
    assert httpx.get(server.url + "/health", headers=headers).status_code == 200
    started = time.monotonic()
    server.popen.send_signal(signal.SIGTERM)
    server.popen.wait(timeout=30)
    took = time.monotonic() - started
    stuck.kill()
    assert took < 3 + 2 + 2, took  # the drain time, the grace, and process exit
