"""Files: uploaded inputs and generated outputs, as OpenAI's file objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class FilePurpose(StrEnum):
    BATCH = "batch"
    BATCH_OUTPUT = "batch_output"
    USER_DATA = "user_data"  # any file (a dataset job's table, say); OpenAI's name


@dataclass(frozen=True)
class FileObject:
    id: str
    project: str
    filename: str
    purpose: str
    bytes: int
    lines: int
    created_at: datetime
    expires_at: datetime | None = None  # deleted then, content and all
