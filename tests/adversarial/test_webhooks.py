"""Finding 7: webhooks went out one at a time with a 10 s timeout, so one receiver that
hangs delayed every later event by 10 s each."""

from __future__ import annotations

import json
import socket
import threading
import time
from itertools import pairwise
from pathlib import Path

from tests.adversarial.conftest import launch


def test_a_hanging_receiver_does_not_delay_events_one_after_another(
    tmp_path: Path, tiny_llama: Path
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[float] = []
    held: list[socket.socket] = []

    def hang() -> None:  # accepts, reads, never answers
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(time.monotonic())
            held.append(conn)

    threading.Thread(target=hang, daemon=True).start()
    extra = f'webhook_url = "http://127.0.0.1:{port}/hook"\nwebhook_timeout_seconds = 2'
    server, (key, _), _ = launch(tmp_path, tiny_llama, extra=extra)
    try:
        import httpx

        api = httpx.Client(
            base_url=server.url + "/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        request = {
            "custom_id": "r",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "echo", "messages": [{"role": "user", "content": "x"}]},
        }
        raw = (json.dumps(request) + "\n").encode()
        ids = []
        for _ in range(5):
            file_id = api.post(
                "/files", files={"file": ("a.jsonl", raw)}, data={"purpose": "batch"}
            ).json()["id"]
            ids.append(
                api.post(
                    "/batches",
                    json={
                        "input_file_id": file_id,
                        "endpoint": "/v1/chat/completions",
                        "completion_window": "1h",
                    },
                ).json()["id"]
            )
        for batch_id in ids:
            while api.get(f"/batches/{batch_id}").json()["status"] != "completed":
                time.sleep(0.1)
        ended = time.monotonic()
        while len(accepted) < 5 and time.monotonic() - ended < 30:
            time.sleep(0.1)
        # One at a time, each send would wait out the 2 s timeout before the next began;
        # side by side, events due together reach the receiver together, and all five
        # are tried within a few seconds, not 5 x 2 s (or 5 x 10 s) one after another.
        assert len(accepted) >= 5 and accepted[4] - ended < 8
        gaps = [b - a for a, b in pairwise(accepted)]
        assert min(gaps) < 0.5, gaps
    finally:
        server.stop()
        listener.close()
        for conn in held:
            conn.close()
