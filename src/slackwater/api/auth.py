"""API keys: `Authorization: Bearer <key>`. Keys are stored as SHA-256 hashes; each key
belongs to a project and sees only that project's files and batches."""

from __future__ import annotations

import hashlib
import secrets
import time

from fastapi import Request

from slackwater.domain.errors import AuthenticationError
from slackwater.ports import KeyStore

DEFAULT_PROJECT = "default"
KEY_PREFIX = "sk-sw-"


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyCheck:
    """Resolves the caller's project; open (one default project) until a key exists."""

    def __init__(self, store: KeyStore, *, refresh_seconds: float = 5.0) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._keys_exist = False
        self._checked_at = float("-inf")

    async def _required(self) -> bool:
        # Once keys exist they stay required; until then look again now and then.
        if not self._keys_exist and time.monotonic() - self._checked_at > self.refresh_seconds:
            self._keys_exist = await self.store.has_keys()
            self._checked_at = time.monotonic()
        return self._keys_exist

    async def __call__(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if not await self._required():
            return DEFAULT_PROJECT
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationError(
                "You didn't provide an API key. Pass it as 'Authorization: Bearer <key>'."
            )
        project = await self.store.project_for_key(hash_key(key.strip()))
        if project is None:
            raise AuthenticationError("Incorrect API key provided.")
        return project
