"""`slackwater sim` end to end: a trace file and a workload file in, a comparison out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from slackwater.cli import app

runner = CliRunner()


def files(tmp_path: Path) -> tuple[Path, Path]:
    # Spot for 2 hours, gone for 2, back for 4 (ticks of 10 minutes; 0: spot is there).
    trace = tmp_path / "trace.json"
    trace.write_text(
        json.dumps({"metadata": {"gap_seconds": 600}, "data": [0] * 12 + [1] * 12 + [0] * 24})
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


def test_sim_runs_several_spot_pools_against_their_joint_optimum(tmp_path: Path) -> None:
    trace, workload = files(tmp_path)  # spot for 2 h, gone for 2, back for 4
    other = tmp_path / "other.json"  # gone for 2 h, spot for 2, gone for 4
    other.write_text(
        json.dumps({"metadata": {"gap_seconds": 600}, "data": [1] * 12 + [0] * 12 + [1] * 24})
    )
    # 5 hours of work due in 6: the first zone's outage alone forces on-demand.
    workload.write_text(
        json.dumps({"jobs": [{"arrival_hours": 0, "work_hours": 5, "window_hours": 6}]})
    )
    common = ["sim", "--workload", str(workload), "--json", "--restart-seconds", "600"]

    def run(*extra: str) -> dict[str, Any]:
        result = runner.invoke(app, [*common, *extra])
        assert result.exit_code == 0, result.output
        report: dict[str, Any] = json.loads(result.output)
        return report

    alone = run("--trace", str(trace))
    both = run("--trace", str(trace), "--trace", str(other), "--spot-price", "0.918",
               "--spot-price", "1.2")  # fmt: skip
    assert both["trace"] == f"{trace} + {other}"
    policies = both["policies"]
    assert all(p["missed_feasible_deadlines"] == 0 for p in policies.values())
    assert all(p["ratio_to_optimum"] >= 1.0 for p in policies.values())
    # The second zone has spot while the first has none: the long job need not wait or
    # pay on-demand, and the planner finds that too.
    for name in ("optimum", "slack_reserve", "greedy"):
        assert float(policies[name]["cost_usd"]) < float(alone["policies"][name]["cost_usd"])
    # Spot throughout, over three instances: the first zone's 2 + 2 hours, and the 90
    # minutes of the dearer zone that the 30 ticks of work and 3 restarts still need.
    assert abs(float(policies["optimum"]["cost_usd"]) - (4 * 0.918 + 1.5 * 1.2)) < 0.01


def test_sim_names_what_is_wrong_with_several_traces(tmp_path: Path) -> None:
    trace, workload = files(tmp_path)
    fine = tmp_path / "fine.json"
    fine.write_text(json.dumps({"metadata": {"gap_seconds": 300}, "data": [0] * 96}))
    args = ["sim", "--workload", str(workload), "--trace", str(trace), "--trace", str(fine)]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert "need the same tick" in result.output and "fine (300 s)" in result.output
    three = [*args[:-2], "--trace", str(trace), "--trace", str(trace)]
    result = runner.invoke(app, [*three, *["--spot-price", "1", "--spot-price", "2"]])
    assert result.exit_code != 0 and "one per trace (3)" in result.output
