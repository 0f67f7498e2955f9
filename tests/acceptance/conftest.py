"""Real `slackwater` processes, as a user runs them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

SLACKWATER = [sys.executable, "-m", "slackwater"]
ROOT = Path(__file__).resolve().parents[2]


def docs_block(page: str, test: str) -> str:
    """The bash block of docs/<page> marked as run as written by `test` (a test file)."""
    marker = f"<!-- tutorial: tests/acceptance/{test} runs this block as written -->"
    text = (ROOT / "docs" / page).read_text()
    found = re.search(re.escape(marker) + r"\n```bash\n(.*?)\n```", text, re.S)
    assert found, f"docs/{page} has lost its tutorial block"
    return found.group(1)


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SLACKWATER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Serve(Process):
    url: str


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    handle = log.open("ab")
    popen = subprocess.Popen(
        [*SLACKWATER, *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    return Process(popen, log)


def start_server(
    data_dir: Path, *extra: str, env: dict[str, str] | None = None, port: int | None = None
) -> Serve:
    port = port or free_port()
    proc = start(
        ["serve", "--data-dir", str(data_dir), "--port", str(port), *extra],
        data_dir.parent / f"serve-{port}.log",
        env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"server exited:\n{proc.log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.stop(signal.SIGKILL)
            raise RuntimeError(f"server did not start:\n{proc.log.read_text()}")
        time.sleep(0.2)
    return Serve(proc.popen, proc.log, url)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for proc in started:
        proc.stop()
