"""BatchService: create, read, list and cancel batches (OpenAI's Batch API semantics)."""

from __future__ import annotations

from typing import Any

from slackwater.domain.batch import Batch, BatchStatus, Endpoint
from slackwater.domain.clock import parse_completion_window
from slackwater.domain.errors import InvalidRequest
from slackwater.domain.files import FilePurpose
from slackwater.domain.ids import new_id
from slackwater.ports import Clock, Page, Store

MAX_METADATA_KEYS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


def check_metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata must be an object of strings", param="metadata")
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidRequest(f"metadata has more than {MAX_METADATA_KEYS} keys", param="metadata")
    for key, value in metadata.items():
        if (
            not isinstance(value, str)
            or len(key) > MAX_METADATA_KEY
            or len(value) > MAX_METADATA_VALUE
        ):
            raise InvalidRequest(
                f"metadata[{key!r}] must be a string of at most {MAX_METADATA_VALUE} characters "
                f"under a key of at most {MAX_METADATA_KEY}",
                param=f"metadata.{key}",
            )
    return dict(metadata)


class BatchService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def create(
        self,
        project: str,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: Any = None,
    ) -> Batch:
        if endpoint not in {e.value for e in Endpoint}:
            raise InvalidRequest(
                f"endpoint {endpoint!r} is not supported; use one of "
                + ", ".join(e.value for e in Endpoint),
                param="endpoint",
            )
        window = parse_completion_window(completion_window)
        checked = check_metadata(metadata)
        file = await self.store.get_file(project, input_file_id)
        if file.purpose != FilePurpose.BATCH.value:
            raise InvalidRequest(
                f"file {input_file_id} has purpose {file.purpose!r}; batches need 'batch'",
                param="input_file_id",
            )
        now = self.clock()
        batch = Batch(
            id=new_id("batch"),
            project=project,
            endpoint=endpoint,
            input_file_id=input_file_id,
            completion_window=completion_window,
            status=BatchStatus.VALIDATING,
            created_at=now,
            expires_at=now + window,
            metadata=checked,
        )
        await self.store.add_batch(batch)
        return await self.store.get_batch(project, batch.id)

    async def get(self, project: str, batch_id: str) -> Batch:
        return await self.store.get_batch(project, batch_id)

    async def list(self, project: str, *, limit: int, after: str | None) -> Page:
        return await self.store.list_batches(project, limit=limit, after=after)

    async def cancel(self, project: str, batch_id: str) -> Batch:
        batch = await self.store.get_batch(project, batch_id)
        if batch.status in (BatchStatus.CANCELLING, BatchStatus.CANCELLED):
            return batch
        return await self.store.move_batch(batch_id, BatchStatus.CANCELLING, self.clock())
