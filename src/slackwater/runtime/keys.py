"""API keys: made, listed and revoked here; checked on every call by `api/auth.py`.

A key is `sk-sw-` and 43 random URL-safe characters, shown once when it is made; the
store keeps its SHA-256 hash. Revocation and expiry are read from the store on every
call, so they take effect at once on every server sharing it.
"""

from __future__ import annotations

import hashlib
import secrets

from slackwater.domain.clock import parse_duration
from slackwater.domain.errors import InvalidRequest
from slackwater.domain.ids import new_id
from slackwater.domain.keys import ApiKey, KeyScope
from slackwater.ports import Clock, KeyStore

KEY_PREFIX = "sk-sw-"


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyService:
    def __init__(self, store: KeyStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def create(
        self,
        project: str,
        *,
        name: str | None = None,
        scope: str = KeyScope.ALL.value,
        expires_in: str | None = None,
    ) -> tuple[str, ApiKey]:
        """A new key: (the secret, shown once; its record)."""
        if not project or len(project) > 128:
            raise InvalidRequest("a project name is 1 to 128 characters", param="project")
        try:
            chosen = KeyScope(scope)
        except ValueError:
            known = ", ".join(s.value for s in KeyScope)
            raise InvalidRequest(f"scope {scope!r} is not one of {known}", param="scope") from None
        now = self.clock()
        lifetime = parse_duration(expires_in, "expires_in") if expires_in else None
        key = ApiKey(
            id=new_id("key"),
            project=project,
            created_at=now,
            name=name,
            scope=chosen,
            expires_at=now + lifetime if lifetime else None,
        )
        secret = new_secret()
        await self.store.add_key(key, hash_key(secret))
        return secret, key

    async def list(self, project: str | None = None) -> list[ApiKey]:
        return await self.store.list_keys(project)

    async def revoke(self, key_id: str) -> ApiKey:
        return await self.store.revoke_key(key_id, self.clock())
