"""The sessions tutorial in docs/sessions.md, run as written: a code-review agent over
local files on the real local chat model, from the server's start to its report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.conftest import ROOT, docs_block

pytestmark = pytest.mark.slow


def test_the_sessions_tutorial_runs_as_written(tmp_path: Path) -> None:
    # A copy of the repository's root as the tutorial needs it: its examples.
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("SLACKWATER_DATA_DIR", None)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", docs_block("sessions.md", "test_session_tutorial.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = (tmp_path / "serve.log").read_text() if (tmp_path / "serve.log").exists() else ""
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{log}"
    report = (tmp_path / "review.md").read_text()
    assert report.startswith("# Code review") and "Approved by: me" in report
    assert "## examples/review_agent.py" in report and "## examples/openai_client.py" in report
    reviews = [r.split("\n\n", 1)[1].strip() for r in report.split("## ")[1:]]
    assert all(reviews) and max(len(r) for r in reviews) > 40, report  # the model's own words
    assert '"status": "completed"' in done.stdout and "sess_" in done.stdout
