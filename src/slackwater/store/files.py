"""Files: uploaded inputs and generated outputs (their contents live in the blob store)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Row

from slackwater.domain.batch import BatchStatus
from slackwater.domain.errors import Conflict, NotFound
from slackwater.domain.files import FileObject
from slackwater.domain.text import shown
from slackwater.ports import Page
from slackwater.store.database import Database
from slackwater.store.schema import batches, files


def _file(row: Row[Any]) -> FileObject:
    return FileObject(**row._mapping)


def _not_found(file_id: str) -> NotFound:
    return NotFound(f"No such File object: {shown(file_id)}", param="file_id")


class SqlFiles(Database):
    async def add_file(self, file: FileObject) -> None:
        async with self.writing() as conn:
            await conn.execute(insert(files).values(**asdict(file)))

    async def get_file(self, project: str | None, file_id: str) -> FileObject:
        query = select(files).where(files.c.id == file_id)
        if project is not None:
            query = query.where(files.c.project == project)
        async with self.reading() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise _not_found(file_id)
        return _file(row)

    async def list_files(
        self,
        project: str,
        *,
        purpose: str | None,
        limit: int,
        after: str | None,
        order: str = "desc",
    ) -> Page:
        query = select(files).where(files.c.project == project)
        if purpose:
            query = query.where(files.c.purpose == purpose)
        return await self.page(
            query, files.c.id, limit=limit, after=after, convert=_file, ascending=order == "asc"
        )

    async def expired_files(self, now: datetime, limit: int) -> list[FileObject]:
        query = (
            select(files)
            .where(files.c.expires_at.is_not(None), files.c.expires_at <= now)
            .order_by(files.c.expires_at)
            .limit(limit)
        )
        async with self.reading() as conn:
            return [_file(row) for row in (await conn.execute(query)).all()]

    async def delete_file(self, project: str, file_id: str) -> FileObject:
        async with self.writing() as conn:
            row = (
                await conn.execute(
                    select(files).where(files.c.id == file_id, files.c.project == project)
                )
            ).first()
            if row is None:
                raise _not_found(file_id)
            reader = (
                await conn.execute(
                    select(batches.c.id).where(
                        batches.c.input_file_id == file_id,
                        batches.c.status == BatchStatus.VALIDATING.value,
                    )
                )
            ).first()
            if reader is not None:
                raise Conflict(
                    f"file {file_id} is the input of batch {reader.id}, which is being "
                    "validated; delete the file once the batch is in progress, or cancel "
                    "the batch first",
                    param="file_id",
                )
            await conn.execute(delete(files).where(files.c.id == file_id))
        return _file(row)

    async def stored_bytes(self, project: str) -> int:
        query = select(func.coalesce(func.sum(files.c.bytes), 0)).where(files.c.project == project)
        async with self.reading() as conn:
            return int((await conn.execute(query)).scalar_one())
