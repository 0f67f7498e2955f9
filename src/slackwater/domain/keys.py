"""API keys: each belongs to one project, may expire or be revoked, and has a scope."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class KeyScope(StrEnum):
    ALL = "all"  # every call
    READ = "read"  # reads only (GET): status pages, listings, results
    BATCH = "batch"  # files and batches; no realtime inference


# Paths a batch-scoped key may call (and nothing else but GET /v1/models): its work and
# the webhooks that say when it is done.
_BATCH_PATHS = (
    "/v1/files",
    "/v1/batches",
    "/v1/webhook_endpoints",
    "/v1/webhook_event_types",
    "/ui",  # the dashboard: batches, their files, their cost
)


@dataclass(frozen=True)
class ApiKey:
    id: str  # `key_...`: names the key in listings and revocation; not the secret
    project: str
    created_at: datetime
    name: str | None = None
    scope: KeyScope = KeyScope.ALL
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.expires_at is None or now < self.expires_at

    def allows(self, method: str, path: str) -> bool:
        """Whether the key's scope lets it make this call."""
        if self.scope is KeyScope.ALL:
            return True
        reading = method in ("GET", "HEAD")
        if self.scope is KeyScope.READ:
            return reading
        return path.startswith(_BATCH_PATHS) or (reading and path.startswith("/v1/models"))
