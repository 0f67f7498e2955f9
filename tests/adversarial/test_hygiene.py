"""Findings 4-6 and 8-10: keys that cannot be revoked, a filename that crashes the
parser, uploads trickled a byte at a time, a reused idempotency key, request ids and
/metrics that reveal other tenants, and hostile values stored and echoed back."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx

from tests.acceptance.conftest import run_cli
from tests.adversarial.conftest import Target


def upload(api: httpx.Client, raw: bytes, name: str = "in.jsonl") -> httpx.Response:
    return api.post("/files", files={"file": (name, raw)}, data={"purpose": "batch"})


def line(i: int) -> bytes:
    body = {"model": "echo", "messages": [{"role": "user", "content": f"hi {i}"}]}
    request = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions"}
    return json.dumps({**request, "body": body}).encode() + b"\n"


def test_keys_are_listed_revoked_and_scoped(target: Target, tmp_path: Path) -> None:
    where = ["--data-dir", str(target.data)]
    made = run_cli("keys", "create", "--project", "tenant-a", "--name", "temp", *where)
    secret = made.stdout.strip()
    auth = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(target.server.url + "/v1/batches", headers=auth).status_code == 200
    listed = json.loads(run_cli("keys", "list", "--project", "tenant-a", "--json", *where).stdout)
    [temp] = [k for k in listed if k["name"] == "temp"]
    assert run_cli("keys", "revoke", temp["id"], *where).returncode == 0
    started = time.monotonic()
    while httpx.get(target.server.url + "/v1/batches", headers=auth).status_code != 401:
        assert time.monotonic() - started < 1  # revoked within a second
        time.sleep(0.05)


def test_a_ten_kilobyte_filename_is_a_clear_400_and_the_connection_lives(
    target: Target,
) -> None:
    with target.a.client() as api:
        refused = upload(api, line(0), name="a" * 10_240)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == (
            "invalid_multipart"
        )
        assert api.get("/files").status_code == 200  # same keep-alive connection


def test_hostile_filenames_are_cleaned_and_long_ids_are_not_echoed(target: Target) -> None:
    with target.a.client() as api:
        stored = upload(api, line(0), name="../../../etc/pass\u202ewd<script>.jsonl").json()
        assert stored["filename"] == "pass\u202ewd_script_.jsonl".replace("\u202e", "")
        missing = api.get("/files/file_" + "x" * 60_000)
        assert missing.status_code == 404 and len(missing.content) < 500


def test_an_upload_trickled_a_byte_at_a_time_is_cut_off(target: Target) -> None:
    host, port = target.server.url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/files HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {target.a.key}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
        '--b\r\nContent-Disposition: form-data; name="file"; filename="s.jsonl"\r\n\r\n'
    ).encode()
    with socket.create_connection((host, int(port)), timeout=90) as sock:
        sock.sendall(head)
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer and time.monotonic() - started < 80:
            try:
                sock.sendall(b"x")  # one byte a second
                sock.settimeout(1)
                answer += sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 70


def test_reusing_an_idempotency_key_with_another_body_is_refused(target: Target) -> None:
    with target.a.client() as api:
        file_id = upload(api, line(0)).json()["id"]
        body = {
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "1h",
        }
        headers = {"Idempotency-Key": f"k-{time.monotonic_ns()}"}
        first = api.post("/batches", json=body, headers=headers).json()
        again = api.post("/batches", json=body, headers=headers).json()
        assert again["id"] == first["id"]
        other = api.post("/batches", json={**body, "completion_window": "2h"}, headers=headers)
        assert other.status_code == 422 and first["id"] in other.json()["error"]["message"]


def test_ids_and_metrics_tell_a_tenant_nothing_of_the_others(target: Target) -> None:
    def finished_ids(tenant: object) -> list[str]:
        with tenant.client() as api:  # type: ignore[attr-defined]
            file_id = upload(api, line(0) + line(1)).json()["id"]
            batch = api.post(
                "/batches",
                json={
                    "input_file_id": file_id,
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "1h",
                },
            ).json()
            while batch["status"] not in ("completed", "failed"):
                time.sleep(0.1)
                batch = api.get(f"/batches/{batch['id']}").json()
            out = api.get(f"/files/{batch['output_file_id']}/content").text.splitlines()
            return [json.loads(o)["response"]["request_id"] for o in out]

    a, b = finished_ids(target.a), finished_ids(target.b)
    numbers = [int(i.removeprefix("req_"), 16) for i in a + b]
    # Row numbers would be consecutive across tenants; these are not even close.
    assert all(abs(x - y) > 1_000_000 for x in numbers for y in numbers if x != y)
    assert httpx.get(target.server.url + "/metrics").status_code == 401
    assert httpx.get(target.server.url + "/openapi.json").status_code == 401
    with target.b.client() as api:
        assert httpx.get(target.server.url + "/metrics", headers=api.headers).status_code == 200
