"""The predictions tutorial in docs/predictions.md, run as written: train on a bundled
data set, score a table with a dataset job, read a precomputed answer."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.conftest import docs_block

pytestmark = pytest.mark.slow


def test_the_predictions_tutorial_runs_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("SLACKWATER_DATA_DIR", None)
    done = subprocess.run(
        [
            "bash",
            "-euo",
            "pipefail",
            "-c",
            docs_block("predictions.md", "test_predictions_tutorial.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    with (tmp_path / "scored.csv").open() as handle:
        scored = list(csv.DictReader(handle))
    assert len(scored) == 150 and scored[0]["id"] == "flower-0"
    assert {r["prediction"] for r in scored} == {"0", "1", "2"}
    looked_up = json.loads(done.stdout[done.stdout.rindex("{") :])  # the last command's
    assert looked_up["key"] == "flower-120" and looked_up["prediction"] == 2
