"""Dataset jobs and precomputed predictions.

A dataset job runs a classical model over a table (CSV or Parquet) in chunks of rows:
each finished chunk is recorded with its predictions, so a job resumed after a crash
redoes only the chunks that were not recorded. Its predictions are also kept by key
(`model`, `key`) as one version of the model's precomputed answers; when the job
completes, that version becomes the one readers see, in one step, and older versions
go.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    MISSED = "missed"  # a scheduled run whose time passed while no scheduler ran

    @property
    def ended(self) -> bool:
        return self is not JobStatus.QUEUED and self is not JobStatus.RUNNING


class TableFormat(enum.StrEnum):
    CSV = "csv"
    PARQUET = "parquet"

    @classmethod
    def of(cls, path: str) -> TableFormat | None:
        lowered = path.lower()
        if lowered.endswith((".csv", ".csv.gz")):
            return cls.CSV
        if lowered.endswith((".parquet", ".pq")):
            return cls.PARQUET
        return None


@dataclass(frozen=True)
class PredictionJob:
    id: str
    project: str
    model: str
    source: str  # the table's path
    format: TableFormat
    key: str  # the column that names each row (kept in the output; the cache's key)
    output: str  # predict, predict_proba, embedding
    chunk_rows: int
    status: JobStatus
    created_at: datetime
    deadline: datetime
    keep: tuple[str, ...] = ()  # more columns copied to the output
    schedule_id: str | None = None
    rows_done: int = 0
    chunks_done: int = 0
    total_rows: int | None = None  # known once read to its end (or from Parquet's footer)
    estimated_rows: int | None = None  # at submission (exact for Parquet), for the planner
    compute_seconds: float = 0.0
    error: dict[str, Any] | None = None
    owner: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: str | None = None  # the output table's blob key, once completed


@dataclass(frozen=True)
class Chunk:
    """One recorded chunk: its predictions by key, written with its progress at once."""

    seq: int
    rows: int
    compute_seconds: float
    values: list[tuple[str, str]] = field(default_factory=list)  # (key, JSON)


@dataclass(frozen=True)
class OpenJob:
    """A dataset job not ended, as the planner sees it."""

    id: str
    model: str
    deadline: datetime
    rows_left: int
    seconds_per_row: float | None  # measured: this job's chunks, else the model's past jobs


@dataclass(frozen=True)
class Precomputed:
    model: str
    key: str
    value: Any
    computed_at: datetime
    version: str  # the job that computed it
    output: str = "predict"  # what it is: predict, predict_proba, embedding
