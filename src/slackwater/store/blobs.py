"""File contents on local disk, written through a temp file and renamed into place."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from slackwater.domain.errors import NotFound


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> str:
        if "/" in key or key.startswith("."):
            raise ValueError(f"bad blob key {key!r}")
        return str(self.root / key)

    @contextmanager
    def writer(self, key: str) -> Iterator[IO[bytes]]:
        final = self.path(key)
        temp = f"{final}.part"
        try:
            with open(temp, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
        finally:
            with suppress(FileNotFoundError):
                os.unlink(temp)

    def open(self, key: str) -> IO[bytes]:
        try:
            return open(self.path(key), "rb")
        except FileNotFoundError:
            raise NotFound(f"no content stored for {key}") from None

    async def delete(self, key: str) -> None:
        with suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, self.path(key))

    async def size(self, key: str) -> int:
        try:
            return (await asyncio.to_thread(os.stat, self.path(key))).st_size
        except FileNotFoundError:
            raise NotFound(f"no content stored for {key}") from None
