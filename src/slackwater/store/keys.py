"""API keys, stored as hashes, each belonging to a project."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select

from slackwater.store.database import Database
from slackwater.store.schema import api_keys


class SqlKeys(Database):
    async def add_key(self, key_hash: str, project: str, now: datetime) -> None:
        async with self.writing() as conn:
            await conn.execute(
                insert(api_keys).values(key_hash=key_hash, project=project, created_at=now)
            )

    async def project_for_key(self, key_hash: str) -> str | None:
        query = select(api_keys.c.project).where(api_keys.c.key_hash == key_hash)
        async with self.reading() as conn:
            return (await conn.execute(query)).scalar()

    async def has_keys(self) -> bool:
        async with self.reading() as conn:
            return (await conn.execute(select(api_keys.c.key_hash).limit(1))).first() is not None
