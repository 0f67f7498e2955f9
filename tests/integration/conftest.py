"""An in-process server (the real app, fake-engine models) driven over ASGI."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from slackwater.api.server import create_app
from slackwater.app import build
from slackwater.config import ModelConfig, Settings
from slackwater.runtime.services import Services


class Clock:
    """Real time, plus however far a test has moved it on."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def fake_models(**options: Any) -> list[ModelConfig]:
    return [
        ModelConfig(
            name="echo",
            engine="fake",
            endpoints=["/v1/chat/completions", "/v1/completions"],
            max_batch_size=4,
            context_window=4096,
            options=options,
        ),
        ModelConfig(
            name="vec",
            engine="fake",
            endpoints=["/v1/embeddings"],
            max_batch_size=8,
            options={"dimensions": 16},
        ),
    ]


@dataclass
class Server:
    client: httpx.AsyncClient
    services: Services
    clock: Clock

    async def upload(
        self,
        lines: list[Any] | bytes,
        *,
        name: str = "in.jsonl",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        raw = (
            lines
            if isinstance(lines, bytes)
            else b"".join(
                (json.dumps(x) if not isinstance(x, str) else x).encode() + b"\n" for x in lines
            )
        )
        return await self.client.post(
            "/v1/files", files={"file": (name, raw)}, data={"purpose": "batch"}, headers=headers
        )

    async def submit(
        self,
        lines: list[Any],
        endpoint: str = "/v1/chat/completions",
        window: str = "24h",
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        file = await self.upload(lines, headers=headers)
        assert file.status_code == 200, file.text
        batch = await self.client.post(
            "/v1/batches",
            json={
                "input_file_id": file.json()["id"],
                "endpoint": endpoint,
                "completion_window": window,
            },
            headers=headers,
        )
        assert batch.status_code == 200, batch.text
        result: dict[str, Any] = batch.json()
        return result

    async def wait(
        self,
        batch_id: str,
        until: Callable[[dict[str, Any]], bool] | None = None,
        limit: float = 30,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        done = until or (lambda b: b["status"] in {"completed", "failed", "expired", "cancelled"})
        deadline = asyncio.get_running_loop().time() + limit
        while True:
            batch: dict[str, Any] = (
                await self.client.get(f"/v1/batches/{batch_id}", headers=headers)
            ).json()
            if done(batch):
                return batch
            assert asyncio.get_running_loop().time() < deadline, f"timed out: {batch}"
            await asyncio.sleep(0.05)

    async def lines(self, file_id: str | None) -> list[dict[str, Any]]:
        if file_id is None:
            return []
        response = await self.client.get(f"/v1/files/{file_id}/content")
        assert response.status_code == 200
        return [json.loads(x) for x in response.text.splitlines()]


def chat_line(i: int, model: str = "echo", **extra: Any) -> dict[str, Any]:
    return {
        "custom_id": f"req-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": model,
            "messages": [{"role": "user", "content": f"hello {i}"}],
            "max_tokens": 8,
            **extra,
        },
    }


@pytest.fixture
async def server_factory(
    tmp_path: Path, pytestconfig: pytest.Config
) -> AsyncIterator[Callable[..., Any]]:
    started: list[Services] = []

    async def make(**settings: Any) -> Server:
        options = settings.pop("engine_options", {})
        workers = settings.pop("workers", None)
        ray = settings.pop("ray", False)
        clock = Clock()
        config = Settings.load(
            data_dir=settings.pop("data_dir", tmp_path / f"data{len(started)}"),
            models=settings.pop("models", fake_models(**options)),
            poll_seconds=0.02,
            **settings,
        )
        services = build(config, clock=clock, workers=workers, ray=ray)
        if services.monitor:
            services.monitor.interval = 0.02
        await services.start()
        started.append(services)
        app = create_app(services, manage_lifecycle=False)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sw")
        return Server(client, services, clock)

    yield make
    for services in started:
        await stop_watched(services, pytestconfig)


async def stop_watched(services: Services, config: pytest.Config, after: float = 15.0) -> None:
    """Stop the services; if that takes over `after` seconds, print where every task
    and thread waits, past pytest's capture (a passing test's output is not shown). A
    stop of 60 and one of 120 s were seen once each in full CI runs and never
    reproduced: the next one says where."""

    async def report() -> None:
        await asyncio.sleep(after)
        capture = config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            test = os.environ.get("PYTEST_CURRENT_TEST", "?")
            print(f"\n*** services.stop() has taken over {after:g} s in {test}", file=sys.stderr)
            for task in asyncio.all_tasks():
                print(f"--- {task!r}", file=sys.stderr)
                task.print_stack(file=sys.stderr)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)

    watch = asyncio.create_task(report())
    try:
        await services.stop()
    finally:
        watch.cancel()


@pytest.fixture
async def server(server_factory: Callable[..., Any]) -> Server:
    srv: Server = await server_factory()
    return srv
