"""The exception tree. Every error slackwater raises on purpose derives from SlackwaterError.

    SlackwaterError
    ├── ConfigError            bad settings or model catalog
    ├── InvalidRequest         the caller sent something wrong (HTTP 400)
    │   ├── LimitExceeded      a size or count limit (HTTP 400 / 413)
    │   └── IdempotencyMismatch  a reused Idempotency-Key with other parameters (422)
    ├── AuthenticationError    missing or unknown API key (HTTP 401)
    ├── PermissionDenied       the key's scope does not allow the call (HTTP 403)
    ├── NotFound               no such object for this project (HTTP 404)
    ├── RequestTimeout         the request body came too slowly (HTTP 408)
    ├── Conflict               the object is in a state that forbids the action (HTTP 409)
    ├── QuotaExceeded          a project's queue quota is full (HTTP 429)
    ├── BudgetExceeded         a realtime call ran past its compute budget (HTTP 504)
    └── EngineError            an engine failed a whole call; `retryable` says if trying
        │                      again may help
        ├── ModelUnavailable   a configured model cannot be loaded or reached
        └── OutOfMemory        the engine batch did not fit; smaller batches may

The docstrings of the classes are their default messages.
"""

from __future__ import annotations


class SlackwaterError(Exception):
    """Something went wrong in slackwater."""

    status_code = 500
    code = "internal_error"
    type = "server_error"

    def __init__(
        self, message: str | None = None, *, param: str | None = None, code: str | None = None
    ) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.param = param
        if code:
            self.code = code
        super().__init__(self.message)


class ConfigError(SlackwaterError):
    """The configuration is invalid."""

    code = "config_error"


class InvalidRequest(SlackwaterError):
    """The request is invalid."""

    status_code = 400
    code = "invalid_request"
    type = "invalid_request_error"


class LimitExceeded(InvalidRequest):
    """A size or count limit was exceeded."""

    code = "limit_exceeded"


class IdempotencyMismatch(InvalidRequest):
    """This Idempotency-Key was used before for a different request."""

    status_code = 422
    code = "idempotency_key_reused"


class AuthenticationError(SlackwaterError):
    """Missing or invalid API key. Pass it as `Authorization: Bearer <key>`."""

    status_code = 401
    code = "invalid_api_key"
    type = "invalid_request_error"


class PermissionDenied(SlackwaterError):
    """This API key is not allowed to make this call."""

    status_code = 403
    code = "insufficient_scope"
    type = "invalid_request_error"


class NotFound(SlackwaterError):
    """No such object."""

    status_code = 404
    code = "not_found"
    type = "invalid_request_error"


class RequestTimeout(SlackwaterError):
    """The request took too long to arrive."""

    status_code = 408
    code = "request_timeout"
    type = "invalid_request_error"


class Conflict(SlackwaterError):
    """The object's current state does not allow this action."""

    status_code = 409
    code = "conflict"
    type = "invalid_request_error"


class QuotaExceeded(SlackwaterError):
    """The project's quota is used up; try again when some of its work has finished."""

    status_code = 429
    code = "quota_exceeded"
    type = "requests"


class BudgetExceeded(SlackwaterError):
    """The request ran past its compute budget and was stopped."""

    status_code = 504
    code = "compute_budget_exceeded"
    type = "server_error"


class EngineError(SlackwaterError):
    """The engine failed to run the requests."""

    status_code = 502
    code = "engine_error"

    def __init__(
        self, message: str | None = None, *, retryable: bool = False, status_code: int = 502
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code


class ModelUnavailable(EngineError):
    """The model cannot be loaded or reached."""

    code = "model_unavailable"


class OutOfMemory(EngineError):
    """The engine ran out of memory on this batch."""

    code = "out_of_memory"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, retryable=True, status_code=507)
