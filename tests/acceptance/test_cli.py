"""The CLI as a user runs it: offline run-batch, client commands, one-line errors."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from openai import OpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.acceptance.conftest import Process, run_cli, start, start_server
from tests.acceptance.test_workers import chat_lines, fake_config
from tests.conftest import free_port
from tests.loopback import serve_in_thread

pytestmark = pytest.mark.slow


def write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_run_batch_offline_with_the_real_minilm(tmp_path: Path) -> None:
    lines = [
        {
            "custom_id": f"e{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "all-MiniLM-L6-v2", "input": f"text {i}"},
        }
        for i in range(20)
    ]
    source = write(tmp_path / "in.jsonl", lines)
    done = run_cli("run-batch", "-i", str(source), "-o", str(tmp_path / "out.jsonl"))
    assert done.returncode == 0, done.stderr
    assert "completed: 20 completed, 0 failed" in done.stderr
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["custom_id"] for o in out] == [f"e{i}" for i in range(20)]
    assert len(out[0]["response"]["body"]["data"][0]["embedding"]) == 384


def test_run_batch_killed_part_way_carries_on_when_run_again(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    config = fake_config(tmp_path / "slackwater.toml", calls, latency_ms=300, database_url=None)
    source = write(tmp_path / "in.jsonl", chat_lines(60))
    out, data = tmp_path / "out.jsonl", tmp_path / "data"
    args = ["run-batch", "-i", str(source), "-o", str(out), "-c", str(config)]
    args += ["--data-dir", str(data), "--no-progress"]
    first = start(args, tmp_path / "first.log")

    def recorded() -> set[str]:
        try:
            with sqlite3.connect(f"file:{data / 'slackwater.db'}?mode=ro", uri=True) as db:
                done = db.execute("SELECT custom_id FROM requests WHERE response IS NOT NULL")
                return {row[0] for row in done}
        except sqlite3.Error:  # not there, or not migrated yet
            return set()

    deadline = time.monotonic() + 120
    while len(recorded()) < 10:
        assert first.popen.poll() is None, first.log.read_text()
        assert time.monotonic() < deadline, "the first run recorded nothing"
        time.sleep(0.05)
    first.popen.kill()
    first.popen.wait()
    done_before = recorded()
    ran_before = len(calls.read_text().splitlines())
    assert 10 <= len(done_before) < 60

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "60 completed, 0 failed" in again.stderr
    answers = [json.loads(x) for x in out.read_text().splitlines()]
    assert [a["custom_id"] for a in answers] == [f"r{i}" for i in range(60)]
    # The rerun ran only what had no result: none of the recorded lines ran again.
    rerun = [line.split()[0] for line in calls.read_text().splitlines()[ran_before:]]
    assert rerun and not done_before & set(rerun)
    assert set(rerun) | done_before == {f"r{i}" for i in range(60)}


def test_a_second_run_batch_on_a_data_dir_in_use_is_refused(tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    config = fake_config(tmp_path / "slackwater.toml", calls, latency_ms=300, database_url=None)
    source = write(tmp_path / "in.jsonl", chat_lines(60))
    args = ["run-batch", "-i", str(source), "-c", str(config), "--data-dir", str(tmp_path / "d")]
    first = start([*args, "-o", str(tmp_path / "a.jsonl")], tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 120
        while not calls.exists():
            assert first.popen.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        second = run_cli(*args, "-o", str(tmp_path / "b.jsonl"))
        assert second.returncode != 0
        assert f"another run-batch is using {tmp_path / 'd'}" in second.stderr
    finally:
        first.popen.kill()
        first.popen.wait()


def test_run_batch_reports_bad_lines_by_file_and_line(tmp_path: Path) -> None:
    good = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "all-MiniLM-L6-v2", "input": "x"},
    }
    source = write(tmp_path / "bad.jsonl", [good, {**good, "custom_id": "a"}, "nope"])
    done = run_cli(
        "run-batch", "-i", str(source), "-o", str(tmp_path / "out.jsonl"), "--no-progress"
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{source}:2: custom_id 'a' is used by an earlier line" in done.stderr
    assert f"{source}:3: line 3 is not valid JSON" in done.stderr


def test_run_batch_missing_input_is_one_line(tmp_path: Path) -> None:
    done = run_cli("run-batch", "-i", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "o"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: input file {tmp_path / 'none.jsonl'} does not exist"
    ]


def test_client_commands_against_a_server(tmp_path: Path, processes: list[Process]) -> None:
    config = fake_config(tmp_path / "sw.toml", tmp_path / "calls.log", 0, None)
    server = start_server(tmp_path / "data", "--config", str(config))
    processes.append(server)
    env = {"SLACKWATER_BASE_URL": server.url + "/v1"}
    source = write(tmp_path / "in.jsonl", chat_lines(5))
    created = run_cli(
        "batches",
        "create",
        "-i",
        str(source),
        "--wait",
        "-o",
        str(tmp_path / "out.jsonl"),
        "--json",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    batch = json.loads(created.stdout)
    assert batch["status"] == "completed"
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 5
    listed = run_cli("batches", "list", "--json", env=env)
    assert [b["id"] for b in json.loads(listed.stdout)["data"]] == [batch["id"]]
    shown = run_cli("batches", "get", batch["id"], env=env)
    assert batch["id"] in shown.stdout and "completed" in shown.stdout
    printed = run_cli("batches", "results", batch["id"], env=env)
    assert [json.loads(x)["custom_id"] for x in printed.stdout.splitlines()] == [
        f"r{i}" for i in range(5)
    ]
    files = json.loads(run_cli("files", "list", "--json", env=env).stdout)["data"]
    assert {f["purpose"] for f in files} == {"batch", "batch_output"}
    missing = run_cli("batches", "get", "batch_nope", env=env)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: HTTP 404: No such Batch object: batch_nope"
    nothing = run_cli("batches", "retry", batch["id"], env=env)
    assert nothing.returncode == 1 and "no failed lines to retry" in nothing.stderr
    assert run_cli("files", "delete", batch["input_file_id"], env=env).returncode == 0
    models = run_cli("models", "--config", str(config), "--json")
    assert json.loads(models.stdout)[0]["id"] == "echo"


def test_unreachable_server_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    done = run_cli("batches", "list", "--base-url", url)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: cannot reach {url}/batches")


def test_api_keys_from_the_cli(tmp_path: Path, processes: list[Process]) -> None:
    data = tmp_path / "data"
    config = fake_config(tmp_path / "sw.toml", tmp_path / "calls.log", 0, None)
    key = run_cli(
        "keys", "create", "--project", "team-a", "--data-dir", str(data), "--config", str(config)
    ).stdout.strip()
    assert key.startswith("sk-sw-")
    server = start_server(data, "--config", str(config))
    processes.append(server)
    base = ["--base-url", server.url + "/v1"]
    denied = run_cli("batches", "list", *base)
    assert denied.returncode == 1 and "HTTP 401" in denied.stderr
    allowed = run_cli("batches", "list", *base, "--api-key", key, "--json")
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["data"] == []
    # Listed (without secrets), then revoked: the running server refuses it at once.
    where = ["--data-dir", str(data), "--config", str(config)]
    [listed] = json.loads(run_cli("keys", "list", "--json", *where).stdout)
    assert listed["project"] == "team-a" and listed["active"] and key not in json.dumps(listed)
    revoked = run_cli("keys", "revoke", listed["id"], *where)
    assert revoked.returncode == 0 and listed["id"] in revoked.stdout
    refused = run_cli("batches", "list", *base, "--api-key", key)
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
    scoped = run_cli(
        "keys", "create", "--project", "team-a", "--scope", "read", "--expires-in", "1d", *where
    ).stdout.strip()
    reads = run_cli("batches", "list", *base, "--api-key", scoped, "--json")
    assert reads.returncode == 0
    writes = run_cli("files", "upload", str(config), *base, "--api-key", scoped)
    assert writes.returncode == 1 and "HTTP 403" in writes.stderr


def test_route_and_quote_commands(tmp_path: Path) -> None:
    config = tmp_path / "sw.toml"
    config.write_text(
        """
[[models]]
name = "small"
engine = "fake"
endpoints = ["/v1/chat/completions"]
price = { input = "0.1", output = "0.2" }
quality = { default = 0.6 }

[[models]]
name = "large"
engine = "fake"
endpoints = ["/v1/chat/completions"]
price = { input = "5", output = "15" }
batch_price = { input = "2.5", output = "7.5" }
quality = { default = 0.9 }
"""
    )
    chosen = run_cli(
        "route", "Summarise", "--config", str(config), "--min-quality", "0.8", "--json"
    )
    assert chosen.returncode == 0, chosen.stderr
    record = json.loads(chosen.stdout)
    assert record["model"] == "large" and "under 0.80" in record["passed_over"]["small"]
    impossible = run_cli("route", "x", "--config", str(config), "--min-quality", "0.99")
    assert impossible.returncode == 1 and impossible.stderr.startswith("error: no model can")
    lines = [
        {**line, "body": {**line["body"], "model": "large", "max_tokens": 100}}
        for line in chat_lines(4)
    ]
    source = write(tmp_path / "in.jsonl", [*lines, "not json"])
    quoted = run_cli("quote", str(source), "--config", str(config), "--json")
    assert quoted.returncode == 0, quoted.stderr
    prices = json.loads(quoted.stdout)["models"]["large"]
    assert prices["requests"] == 4 and prices["max_output_tokens"] == 400
    assert prices["tokens_estimated"] is True
    assert float(prices["cost_usd"]["batch"]) * 2 == float(prices["cost_usd"]["realtime"])
    assert f"{source}:5: line 5 is not valid JSON" in quoted.stderr


def test_webhook_endpoints_from_the_cli(tmp_path: Path) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), dict(request.headers)))
        return Response(status_code=202)

    where = ["--data-dir", str(tmp_path / "data")]
    refused = run_cli("webhooks", "create", "http://127.0.0.1:9/x", *where)
    assert refused.returncode == 1 and "https://" in refused.stderr  # http needs allowing
    env = {"SLACKWATER_WEBHOOK_ALLOW_HTTP": "true"}
    with serve_in_thread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        made = run_cli(
            "webhooks", "create", url + "/hook", "--project", "team-a",
            "--event", "batch.completed", "--event", "response.completed", *where, env=env,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        endpoint_id, secret = made.stdout.split()[0], made.stdout.split()[-1]
        assert secret.startswith("whsec_")
        [listed] = json.loads(
            run_cli("webhooks", "list", "--project", "team-a", "--json", *where).stdout
        )
        assert listed["id"] == endpoint_id and secret not in json.dumps(listed)
        assert listed["event_types"] == ["batch.completed", "response.completed"]
        assert json.loads(run_cli("webhooks", "list", "--json", *where).stdout) == []
        tested = run_cli("webhooks", "test", endpoint_id, "--project", "team-a", *where, env=env)
        assert tested.returncode == 0 and "HTTP 202" in tested.stdout
        new = run_cli(
            "webhooks", "rotate", endpoint_id, "--project", "team-a", *where
        ).stdout.strip()
        assert new.startswith("whsec_") and new != secret
    [(body, headers)] = received
    event = OpenAI(api_key="unused").webhooks.unwrap(body, headers, secret=secret)
    assert event.type == "batch.completed"
    other = run_cli("webhooks", "delete", endpoint_id, *where)  # another project's: not found
    assert other.returncode == 1 and endpoint_id in other.stderr
    assert run_cli("webhooks", "delete", endpoint_id, "--project", "team-a", *where).returncode == 0


def test_sessions_from_the_cli(tmp_path: Path) -> None:
    where = ["--data-dir", str(tmp_path / "data")]
    app = ["--app", "tests.integration.agents_app:agents"]
    unknown = run_cli("sessions", "start", "nope", *app, *where)
    assert unknown.returncode == 1 and "No agent named 'nope'" in unknown.stderr
    bad = run_cli("sessions", "start", "summarise", "--arguments", "{texts", *app, *where)
    assert bad.returncode == 1 and "arguments is not JSON" in bad.stderr
    made = run_cli(
        "sessions", "start", "summarise", "--arguments", '{"texts": ["a"]}', *app, *where
    )
    assert made.returncode == 0, made.stderr
    session = json.loads(made.stdout)
    assert (session["agent"], session["status"]) == ("summarise", "queued")
    sent = run_cli("sessions", "send", session["id"], "go", "--payload", '{"ok": 1}', *where)
    assert sent.returncode == 0, sent.stderr
    got = json.loads(run_cli("sessions", "get", session["id"], "--journal", *where).stdout)
    assert got["journal"] == [] and got["status"] == "queued"
    past = run_cli("sessions", "fork", session["id"], "--upto", "1", *where)
    assert past.returncode == 1 and "0 journal entries" in past.stderr
    cancelled = json.loads(run_cli("sessions", "cancel", session["id"], *where).stdout)
    assert cancelled["status"] == "cancelled"
    late = run_cli("sessions", "send", session["id"], "go", *where)
    assert late.returncode == 1 and "takes no more events" in late.stderr
    [listed] = json.loads(run_cli("sessions", "list", *where).stdout)
    assert listed["id"] == session["id"]
