"""`bench/router_eval.py --data DIR --json` runs on any folder of CSVs in RouteLLM's format."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[2] / "bench" / "router_eval.py"


def test_router_eval_on_a_folder_of_csvs(tmp_path: Path) -> None:
    data = tmp_path / "subjects"
    data.mkdir()
    for subject, topic in (("s_cats", "cats"), ("s_tax", "tax law"), ("s_stars", "stars")):
        with (data / f"{subject}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["prompt", "weak-model", "strong-model"])
            for i in range(30):
                long = i % 3 == 0
                prompt = f"Question {i} about {topic}?" + (
                    " Explain in depth." * 20 if long else ""
                )
                writer.writerow([prompt, str(not long), "True"])
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--data",
            str(data),
            "--folds",
            "3",
            "--json",
            "--cache",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) >= {"apgr", "cpt50", "cpt80", "saving_at_95", "policies"}
    assert result["prompts"] == 90 and result["subjects"] == 3
    assert result["models"] == {"weak": "weak-model", "strong": "strong-model"}
    # The headline is judged on a subject no choice was made on; the rest choose.
    assert len(result["held_out_subjects"]) == 1 and result["held_out_prompts"] == 30
    assert set(result["development"]) >= {"slackwater (learned)", "random", "oracle"}
    # Long prompts are exactly where the weak model fails here: the router finds them.
    assert result["apgr"] > result["policies"]["random"]["apgr"]
