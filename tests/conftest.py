"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

PG_URL = os.environ.get("SLACKWATER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# The test script sets this, so that CI fails (not skips) when PostgreSQL is missing.
PG_REQUIRED = os.environ.get("SLACKWATER_REQUIRE_PG") == "1"


def pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def backend_params() -> list[object]:
    marks = []
    if not PG_REQUIRED and not pg_reachable():
        marks.append(pytest.mark.skip(reason="PostgreSQL is not running on 127.0.0.1:5432"))
    return ["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, *marks])]


async def reset_postgres(url: str) -> None:
    """Drop everything, so each test starts from the first migration."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


@pytest.fixture(params=backend_params())
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
    else:
        await reset_postgres(PG_URL)
        yield PG_URL


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from slackwater.engines.tiny_llama import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
