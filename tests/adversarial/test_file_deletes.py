"""Finding 1 (high): deleting a batch's input file while it validates sent intake into a
retry loop at ~100% of a core, the log growing ~33 KB/s."""

from __future__ import annotations

import json
import time

from tests.adversarial.conftest import Target

FINAL = {"completed", "failed", "expired", "cancelled"}


def test_deleting_an_input_file_during_validation_is_refused_and_nothing_spins(
    target: Target,
) -> None:
    lines = "".join(
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "echo", "messages": [{"role": "user", "content": f"hi {i}"}]},
            }
        )
        + "\n"
        for i in range(20_000)
    ).encode()
    with target.a.client() as api:
        file = api.post("/files", files={"file": ("in.jsonl", lines)}, data={"purpose": "batch"})
        assert file.status_code == 200, file.text
        file_id = file.json()["id"]
        batch = api.post(
            "/batches",
            json={
                "input_file_id": file_id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "1h",
            },
        ).json()
        deleted = api.delete(f"/files/{file_id}")
        status = api.get(f"/batches/{batch['id']}").json()["status"]
        if deleted.status_code == 409:
            assert batch["id"] in deleted.json()["error"]["message"]
        else:  # validation had already ended: nothing needs the file any more
            assert deleted.status_code == 200 and status != "validating", (deleted, status)
        # Whatever happened, the batch runs to its end and the server settles: no
        # retry loop, no log flood.
        deadline = time.monotonic() + 120
        while api.get(f"/batches/{batch['id']}").json()["status"] not in FINAL:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    time.sleep(1)
    cpu, size = target.cpu_seconds(), target.server.log.stat().st_size
    time.sleep(1)
    assert target.cpu_seconds() - cpu < 0.3  # idle: under 30% of a core over a second
    assert target.server.log.stat().st_size - size < 2_000
