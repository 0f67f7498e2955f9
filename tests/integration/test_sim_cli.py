"""`slackwater sim` end to end: a trace file and a workload file in, a comparison out."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from slackwater.cli import app

runner = CliRunner()


def files(tmp_path: Path) -> tuple[Path, Path]:
    # Spot for 2 hours, gone for 2, back for 4 (ticks of 10 minutes).
    trace = tmp_path / "trace.json"
    trace.write_text(
        json.dumps({"metadata": {"gap_seconds": 600}, "data": [1] * 12 + [0] * 12 + [1] * 24})
    )
    workload = tmp_path / "workload.json"
    jobs = [
        {"id": "short", "arrival_hours": 0, "work_hours": 1, "window_hours": 4},
        {"id": "long", "arrival_hours": 0.5, "work_hours": 3, "window_hours": 7},
    ]
    workload.write_text(json.dumps({"jobs": jobs}))
    return trace, workload


def test_sim_prints_every_policy_against_the_optimum(tmp_path: Path) -> None:
    trace, workload = files(tmp_path)
    args = ["sim", "--trace", str(trace), "--workload", str(workload), "--json"]
    result = runner.invoke(app, [*args, "--restart-seconds", "600"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    policies = report["policies"]
    assert set(policies) == {
        "realtime",
        "on_demand",
        "greedy",
        "uniform_progress",
        "slack_reserve",
        "optimum",
    }
    assert report["jobs"] == 2 and report["feasible_jobs"] == 2
    assert all(p["missed_feasible_deadlines"] == 0 for p in policies.values())
    # short: 1 h of work + a 10-minute restart, all on spot at 0.918 $/h.
    # long: spot until hour 2, on-demand or wait, then spot: never below pure spot.
    assert policies["optimum"]["ratio_to_optimum"] == 1.0
    assert all(p["ratio_to_optimum"] >= 1.0 for p in policies.values())
    on_demand = (1 + 3 + 2 * 600 / 3600) * 3.06
    assert abs(float(policies["on_demand"]["cost_usd"]) - on_demand) < 0.01


def test_sim_names_a_bad_workload_field(tmp_path: Path) -> None:
    trace, workload = files(tmp_path)
    workload.write_text(json.dumps({"jobs": [{"arrival_hours": 0, "work_hours": "2"}]}))
    result = runner.invoke(app, ["sim", "--trace", str(trace), "--workload", str(workload)])
    assert result.exit_code != 0
    assert "jobs[0].work_hours must be a number" in result.output


def test_sim_names_an_unknown_policy(tmp_path: Path) -> None:
    trace, _ = files(tmp_path)
    result = runner.invoke(app, ["sim", "--trace", str(trace), "--policy", "yolo"])
    assert result.exit_code != 0
    assert "unknown policy 'yolo'" in result.output
