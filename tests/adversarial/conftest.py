"""A real `slackwater serve` process, probed as a hostile or careless tenant would: two
projects' keys, a small local chat model (512-token context) and fake models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import Serve, run_cli, start_server

# A compute budget far past any call here, even on a loaded machine: the flood test holds
# the tiny model with six long calls at once, and a call cut short (504) is not what it probes.
CONFIG = """
drain_seconds = {drain}
max_request_seconds = 120
upload_grace_seconds = 5
{extra}

[[models]]
name = "tiny"
engine = "transformers"
endpoints = ["/v1/chat/completions", "/v1/completions"]
context_window = 512
max_batch_size = 8
options = {{ path = "{tiny}" }}

[[models]]
name = "echo"
engine = "fake"
endpoints = ["/v1/chat/completions"]
context_window = 4096
options = {{ call_log = "{calls}" }}

[[models]]
name = "slow"
engine = "fake"
endpoints = ["/v1/chat/completions"]
options = {{ latency_ms = 5000, call_log = "{calls}" }}

[[models]]
name = "stuck"
engine = "fake"
endpoints = ["/v1/chat/completions"]
options = {{ busy_ms = 120000 }}
"""


@dataclass
class Tenant:
    """One project's view of the server."""

    server: Serve
    key: str

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url + "/v1",
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=timeout,
        )


@dataclass
class Target:
    server: Serve
    data: Path
    calls: Path
    a: Tenant
    b: Tenant

    def cpu_seconds(self) -> float:
        """The server process's CPU time so far (user + system)."""
        fields = Path(f"/proc/{self.server.popen.pid}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = (int(v) for v in fields.split()[11:13])
        return (utime + stime) / os.sysconf("SC_CLK_TCK")


def launch(
    root: Path, tiny: Path, *, drain: float = 120, extra: str = ""
) -> tuple[Serve, list[str], Path]:
    """A server whose two projects' keys exist before it starts."""
    data = root / "data"
    config = root / "slackwater.toml"
    calls = root / "calls.log"
    config.write_text(CONFIG.format(tiny=tiny, calls=calls, drain=drain, extra=extra))
    keys = []
    for project in ("tenant-a", "tenant-b"):
        made = run_cli("keys", "create", "--project", project, "--data-dir", str(data))
        assert made.returncode == 0, made.stderr
        keys.append(made.stdout.strip())
    return start_server(data, "--config", str(config)), keys, calls


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("adversarial")
    server, (a, b), calls = launch(root, tiny_llama)
    yield Target(server, root / "data", calls, Tenant(server, a), Tenant(server, b))
    server.stop()
