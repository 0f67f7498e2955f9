"""API keys, stored as hashes, each belonging to a project."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update

from slackwater.domain.errors import NotFound
from slackwater.domain.keys import ApiKey, KeyScope
from slackwater.domain.text import shown
from slackwater.store.database import Database
from slackwater.store.schema import api_keys

_COLUMNS = (
    api_keys.c.id,
    api_keys.c.project,
    api_keys.c.created_at,
    api_keys.c.name,
    api_keys.c.scope,
    api_keys.c.expires_at,
    api_keys.c.revoked_at,
)


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        project=row.project,
        created_at=row.created_at,
        name=row.name,
        scope=KeyScope(row.scope),
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class SqlKeys(Database):
    async def add_key(self, key: ApiKey, key_hash: str) -> None:
        async with self.writing() as conn:
            await conn.execute(
                insert(api_keys).values(
                    key_hash=key_hash,
                    id=key.id,
                    project=key.project,
                    created_at=key.created_at,
                    name=key.name,
                    scope=key.scope.value,
                    expires_at=key.expires_at,
                )
            )

    async def key_for(self, key_hash: str, now: datetime) -> ApiKey | None:
        query = select(*_COLUMNS).where(
            api_keys.c.key_hash == key_hash,
            or_(api_keys.c.revoked_at.is_(None), api_keys.c.revoked_at > now),
            or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now),
        )
        async with self.reading() as conn:
            row = (await conn.execute(query)).first()
        return _key(row) if row is not None else None

    async def list_keys(self, project: str | None = None) -> list[ApiKey]:
        query = select(*_COLUMNS).order_by(api_keys.c.created_at, api_keys.c.id)
        if project is not None:
            query = query.where(api_keys.c.project == project)
        async with self.reading() as conn:
            return [_key(row) for row in (await conn.execute(query)).all()]

    async def revoke_key(self, key_id: str, now: datetime) -> ApiKey:
        async with self.writing() as conn:
            await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            row = (await conn.execute(select(*_COLUMNS).where(api_keys.c.id == key_id))).first()
        if row is None:
            raise NotFound(f"No such API key: {shown(key_id)}", param="key_id")
        return _key(row)

    async def has_keys(self) -> bool:
        async with self.reading() as conn:
            return (await conn.execute(select(api_keys.c.key_hash).limit(1))).first() is not None
