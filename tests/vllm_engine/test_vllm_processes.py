"""vLLM's engine core and workers are processes of their own: they go with the
slackwater process that started them, however it ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slackwater.engines.tiny_llama import build_tiny_llama

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm


def test_a_killed_worker_takes_its_vllm_engine_processes_with_it(tmp_path: Path) -> None:
    """vLLM's engine core and workers are processes of their own: SIGKILLed alone (not its
    process group), `slackwater run-batch` must not leave them holding the memory a
    restarted worker needs."""
    import psutil

    path = build_tiny_llama(tmp_path / "tiny", head_dim=64)
    config = tmp_path / "slackwater.toml"
    config.write_text(
        '[[models]]\nname = "c"\nengine = "vllm"\nendpoints = ["/v1/chat/completions"]\n'
        f'options = {{ path = "{path}", dtype = "float32", enforce_eager = true, '
        "max_model_len = 512 }\n"
    )
    body = {"model": "c", "messages": [{"role": "user", "content": "go"}], "max_tokens": 400}
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        for i in range(200)
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    log = tmp_path / "log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slackwater", "run-batch", "-i", str(source), "-o",
             str(tmp_path / "out.jsonl"), "-c", str(config), "--no-progress"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while "init engine" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "vLLM did not start"
            time.sleep(0.5)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children  # the engine core (and its worker)
        proc.kill()  # the process alone: its children are not signalled
        proc.wait()
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, [p.name() for p in alive]
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
