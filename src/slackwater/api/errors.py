"""The one place where errors become error JSON: OpenAI's shape, or Anthropic's on the
Anthropic-compatible routes (/v1/messages...)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from slackwater.domain import anthropic
from slackwater.domain.errors import SlackwaterError

log = logging.getLogger(__name__)
ANTHROPIC_ROUTES = ("/v1/messages",)


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _answer(
    request: Request,
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    if request.url.path.startswith(ANTHROPIC_ROUTES):
        return JSONResponse(anthropic.error_body(status, message), status_code=status)
    return JSONResponse(error_body(message, type_, param, code), status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(SlackwaterError)
    async def _slackwater(request: Request, exc: SlackwaterError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
        return _answer(request, exc.status_code, exc.message, exc.type, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            # Its location is a character offset into the body, not a parameter.
            where = first.get("ctx", {}).get("error") or first["msg"]
            message = f"the request body is not valid JSON: {where}"
            return _answer(request, 400, message, code="invalid_json")
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        message = f"{param}: {first['msg']}" if param else str(first["msg"])
        return _answer(request, 400, message, param=param, code="invalid_value")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _answer(request, exc.status_code, str(exc.detail), code=code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        message = "The server had an error processing your request."
        return _answer(request, 500, message, "server_error", code="internal_error")
