"""Every CLI failure a new user hit: a non-zero exit and one line naming what is wrong
and where (file, line, field, URL), never a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.acceptance.conftest import Process, run_cli, start_server

pytestmark = pytest.mark.slow

CONFIG = """
[[models]]
name = "echo"
engine = "fake"
endpoints = ["/v1/chat/completions"]

[[models]]
name = "broken"
engine = "fake"
endpoints = ["/v1/chat/completions"]
options = { failure_rate = 1.0, failure_status = 400 }

[[models]]
name = "x:100:[red]"
engine = "fake"
endpoints = ["/v1/embeddings"]
"""


def line(i: int, model: str = "echo") -> str:
    body = {"model": model, "messages": [{"role": "user", "content": f"hi {i}"}]}
    return json.dumps(
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
    )


def one_line_failure(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sw.toml"
    path.write_text(CONFIG)
    return path


def test_a_broken_config_file_is_named_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('data_dir = "x"\n[[models]\nname = 1\n')
    one_line_failure(run_cli("models", "-c", str(bad)), str(bad), "line 2")


def test_a_port_out_of_range_fails_at_once(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", "99999", "--data-dir", str(tmp_path), timeout=60)
    one_line_failure(result, "port", "65535")


def test_run_batch_checks_its_output_paths_before_any_work(tmp_path: Path, config: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(line(0) + "\n")
    missing = run_cli("run-batch", "-c", str(config), "-i", str(source), "-o", "/nowhere/x.jsonl")
    one_line_failure(missing, "/nowhere", "does not exist")
    folder = run_cli("run-batch", "-c", str(config), "-i", str(source), "-o", str(tmp_path))
    one_line_failure(folder, str(tmp_path), "is a directory")


def test_run_batch_fails_when_requests_fail(tmp_path: Path, config: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(line(0) + "\n" + line(1, "broken") + "\n")
    out = tmp_path / "out.jsonl"
    result = run_cli("run-batch", "-c", str(config), "-i", str(source), "-o", str(out))
    one_line_failure(result, "1 of 2 requests failed", "out.errors.jsonl")
    assert len(out.read_text().splitlines()) == 1  # the answer that worked is kept
    bad = tmp_path / "bad.jsonl"
    bad.write_text(line(0) + "\n{not json\n")
    invalid = run_cli("run-batch", "-c", str(config), "-i", str(bad), "-o", str(out))
    one_line_failure(invalid, "failed validation")
    assert f"{bad}:2:" in invalid.stderr  # the bad line, by file and number


def test_client_commands_say_what_failed(
    tmp_path: Path, config: Path, processes: list[Process]
) -> None:
    server = start_server(tmp_path / "data", "--config", str(config))
    processes.append(server)
    base = ["--base-url", server.url + "/v1"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(line(0) + "\n" + line(1, "nope") + "\n")
    created = run_cli("batches", "create", "-i", str(bad), "--wait", *base)
    one_line_failure(created, "failed validation")
    assert "line 2 (body.model): model 'nope' does not exist" in created.stderr
    batch_id = created.stdout.split("batch_")[1].split()[0]
    shown = run_cli("batches", "get", f"batch_{batch_id}", *base)
    assert shown.returncode == 0 and "line 2 (body.model)" in shown.stderr
    results = run_cli("batches", "results", f"batch_{batch_id}", *base)
    one_line_failure(results, "failed", "has no results")

    good = tmp_path / "good.jsonl"
    good.write_text(line(0) + "\n")
    refused = run_cli("batches", "create", "-i", str(good), "--completion-window", "99d", *base)
    one_line_failure(refused, "completion_window")
    listed = run_cli("files", "list", "--json", *base)
    uploads = [f for f in json.loads(listed.stdout)["data"] if f["filename"] == "good.jsonl"]
    assert uploads == []  # the upload made for the refused batch was removed

    unreachable = run_cli("batches", "list", "--base-url", "http://127.0.0.1:9/v1")
    one_line_failure(unreachable, "cannot reach http://127.0.0.1:9/v1/batches")


def test_routing_and_report_name_the_option_and_the_object(tmp_path: Path) -> None:
    one_line_failure(run_cli("route", "hi", "--max-price", "abc"), "--max-price", "'abc'")
    missing = run_cli("report", "--batch", "batch_nope", "--data-dir", str(tmp_path))
    one_line_failure(missing, "batch_nope")


def test_data_is_printed_as_is(config: Path) -> None:
    listed = run_cli("models", "-c", str(config))
    assert listed.returncode == 0 and "x:100:[red]" in listed.stdout  # no emoji, no markup
