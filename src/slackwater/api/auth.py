"""API keys on every call: `Authorization: Bearer <key>`. Each key belongs to a project and
sees only that project's objects, within its scope; revoked and expired keys are refused
at once (the store is asked on every call)."""

from __future__ import annotations

from fastapi import Request

from slackwater.domain.errors import AuthenticationError, PermissionDenied
from slackwater.ports import Clock, KeyStore
from slackwater.runtime.keys import hash_key

DEFAULT_PROJECT = "default"
UI_COOKIE = "slackwater_key"  # read on /ui paths only: the API itself wants the header


class KeyCheck:
    """Resolves the caller's project; open (one default project) until a key exists."""

    def __init__(self, store: KeyStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._keys_exist = False

    async def _required(self) -> bool:
        # Once keys exist they stay required (revoking them all does not open the server);
        # until then every call looks, so the first key closes the server at once.
        if not self._keys_exist:
            self._keys_exist = await self.store.has_keys()
        return self._keys_exist

    async def __call__(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer":
            secret = request.headers.get("x-api-key", "")  # as Anthropic's clients send it
        if not secret and request.url.path.startswith("/ui"):
            secret = request.cookies.get(UI_COOKIE, "")  # the dashboard's sign-in
        if not await self._required():
            return DEFAULT_PROJECT
        if not secret.strip():
            raise AuthenticationError(
                "You didn't provide an API key. Pass it as 'Authorization: Bearer <key>' "
                "(or 'x-api-key: <key>')."
            )
        key = await self.store.key_for(hash_key(secret.strip()), self.clock())
        if key is None:
            raise AuthenticationError("Incorrect API key provided.")
        if not key.allows(request.method, request.url.path):
            raise PermissionDenied(
                f"this API key's scope ({key.scope.value}) does not allow "
                f"{request.method} {request.url.path}"
            )
        return key.project
