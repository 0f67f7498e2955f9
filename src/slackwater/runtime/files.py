"""FileService: receive uploads as streams (never whole in memory), list, read, delete."""

from __future__ import annotations

import contextlib
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any

from slackwater.domain.errors import (
    Conflict,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    QuotaExceeded,
)
from slackwater.domain.files import FileObject, FilePurpose
from slackwater.domain.ids import new_id
from slackwater.domain.text import shown
from slackwater.ports import BlobStore, Clock, FileStore, Page

UPLOAD_PURPOSES = frozenset({FilePurpose.BATCH.value, FilePurpose.USER_DATA.value})
# How long after its creation a file may be set to expire (OpenAI's limits).
MIN_EXPIRY_SECONDS, MAX_EXPIRY_SECONDS = 3600, 30 * 86400


def expiry_seconds(anchor: Any, seconds: Any, param: str) -> int:
    """An `expires_after` policy, checked: seconds after the file's creation."""
    if anchor != "created_at":
        raise InvalidRequest(
            f"{param}.anchor must be 'created_at', got {shown(anchor)!r}", param=f"{param}.anchor"
        )
    try:
        value = int(seconds)
    except (TypeError, ValueError):
        value = -1
    if str(seconds).strip() != str(value) or not (
        MIN_EXPIRY_SECONDS <= value <= MAX_EXPIRY_SECONDS
    ):
        raise InvalidRequest(
            f"{param}.seconds must be a whole number between {MIN_EXPIRY_SECONDS} and "
            f"{MAX_EXPIRY_SECONDS}, got {shown(seconds)!r}",
            param=f"{param}.seconds",
        )
    return value


@dataclass
class Upload:
    """An upload in progress: bytes go straight to a temp blob as they arrive."""

    id: str
    max_bytes: int
    max_lines: int
    handle: IO[bytes]
    size: int = 0
    newlines: int = 0
    last_byte: int = 10

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise LimitExceeded(
                f"file is larger than the limit of {self.max_bytes} bytes", param="file"
            )
        self.newlines += chunk.count(b"\n")
        self.last_byte = chunk[-1]
        if self.newlines > self.max_lines:
            raise LimitExceeded(
                f"file has more than the limit of {self.max_lines} lines", param="file"
            )
        self.handle.write(chunk)

    @property
    def lines(self) -> int:
        return self.newlines + (1 if self.size and self.last_byte != 10 else 0)


@dataclass(frozen=True)
class UploadPace:
    """How slowly an upload may arrive, and how many one project may send at once."""

    idle_seconds: float = 30.0  # nothing received for this long: cut off
    min_bytes_per_second: float = 1024.0  # on average, once `grace` has passed
    grace_seconds: float = 30.0
    max_concurrent_per_project: int = 4  # in this server process


class FileService:
    def __init__(
        self,
        store: FileStore,
        blobs: BlobStore,
        clock: Clock,
        *,
        max_bytes: int,
        max_lines: int,
        max_stored_bytes: int = 0,
        pace: UploadPace = UploadPace(),
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.clock = clock
        self.max_bytes = max_bytes
        self.max_lines = max_lines
        self.max_stored_bytes = max_stored_bytes
        self.pace = pace
        self._uploading: Counter[str] = Counter()

    def receive(self, stack: ExitStack, project: str) -> Upload:
        """Open an upload whose blob is kept only if the `stack` closes without error;
        QuotaExceeded while the project already sends its most at once."""
        if self._uploading[project] >= self.pace.max_concurrent_per_project:
            raise QuotaExceeded(
                f"project {project!r} is already uploading "
                f"{self.pace.max_concurrent_per_project} files; wait for one to finish"
            )
        self._uploading[project] += 1
        stack.callback(self._finished, project)
        file_id = new_id("file")
        handle = stack.enter_context(self.blobs.writer(file_id))
        return Upload(file_id, self.max_bytes, self.max_lines, handle)

    def _finished(self, project: str) -> None:
        self._uploading[project] -= 1
        if self._uploading[project] <= 0:
            del self._uploading[project]

    async def commit(
        self,
        upload: Upload,
        project: str,
        filename: str,
        purpose: str,
        expires_after: int | None = None,
    ) -> FileObject:
        if purpose not in UPLOAD_PURPOSES:
            raise InvalidRequest(
                f"purpose {purpose!r} is not supported; use 'batch' (or 'user_data' for "
                "a dataset job's table)",
                param="purpose",
            )
        if upload.lines > self.max_lines:
            raise LimitExceeded(f"file has more than {self.max_lines} lines", param="file")
        if self.max_stored_bytes:
            stored = await self.store.stored_bytes(project)
            if stored + upload.size > self.max_stored_bytes:
                raise LimitExceeded(
                    f"project {project!r} stores {stored} bytes of files; this upload of "
                    f"{upload.size} bytes would pass its quota of {self.max_stored_bytes}. "
                    "Delete files you no longer need.",
                    param="file",
                )
        return await self.register(
            upload.id,
            project,
            filename or "upload.jsonl",
            purpose,
            size=upload.size,
            lines=upload.lines,
            expires_after=expires_after,
        )

    async def register(
        self,
        file_id: str,
        project: str,
        filename: str,
        purpose: str,
        *,
        size: int,
        lines: int,
        expires_after: int | None = None,
    ) -> FileObject:
        """Record a file whose content is already in the blob store under `file_id`;
        deleted `expires_after` seconds from now, if given."""
        now = self.clock()
        file = FileObject(
            id=file_id,
            project=project,
            filename=filename,
            purpose=purpose,
            bytes=size,
            lines=lines,
            created_at=now,
            expires_at=now + timedelta(seconds=expires_after) if expires_after else None,
        )
        await self.store.add_file(file)
        return file

    async def get(self, project: str, file_id: str) -> FileObject:
        return await self.store.get_file(project, file_id)

    async def list(
        self,
        project: str,
        *,
        purpose: str | None,
        limit: int,
        after: str | None,
        order: str = "desc",
    ) -> Page:
        return await self.store.list_files(
            project, purpose=purpose, limit=limit, after=after, order=order
        )

    async def content_path(self, project: str, file_id: str) -> str:
        file = await self.store.get_file(project, file_id)
        await self.blobs.size(file.id)  # raises NotFound when the content is gone
        return self.blobs.path(file.id)

    async def delete(self, project: str, file_id: str) -> FileObject:
        file = await self.store.delete_file(project, file_id)
        await self.blobs.delete(file.id)
        return file

    async def delete_expired(self, limit: int = 500) -> int:
        """Delete files past their `expires_at`, content and all; one still being read
        (the input of a validating batch) waits for the next round."""
        deleted = 0
        for file in await self.store.expired_files(self.clock(), limit):
            with contextlib.suppress(Conflict, NotFound):
                await self.delete(file.project, file.id)
                deleted += 1
        return deleted
