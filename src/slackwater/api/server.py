"""The FastAPI application for a Services instance, and the HTTP server that runs it."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

import uvicorn
from fastapi import Depends, FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slackwater import __version__
from slackwater.api import (
    anthropic,
    batches,
    errors,
    files,
    inference,
    predictions,
    responses,
    sessions,
    ui,
    webhooks,
)
from slackwater.api.auth import KeyCheck
from slackwater.api.deps import project
from slackwater.domain.ids import new_id
from slackwater.runtime.process import exit_after
from slackwater.runtime.services import Services


def create_app(svc: Services, *, manage_lifecycle: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await svc.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await svc.stop()

    # The API's own description and the metrics are routes of their own, so that they can
    # require a key like the rest (`open_meta` leaves them open).
    app = FastAPI(
        title="slackwater",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.services = svc
    app.state.key_check = KeyCheck(svc.store, svc.clock)
    errors.install(app)

    app.add_middleware(RequestIds)
    app.include_router(files.router)
    app.include_router(batches.router)
    app.include_router(inference.router)
    app.include_router(responses.router)
    app.include_router(webhooks.router)
    app.include_router(sessions.router)
    app.include_router(ui.router)
    app.mount("/static", StaticFiles(directory=str(ui.STATIC)), name="static")

    @app.exception_handler(ui.SignIn)
    async def sign_in(_: object, __: Exception) -> Response:
        return RedirectResponse("/ui/login", status_code=303)

    app.include_router(predictions.router)
    app.include_router(anthropic.router)
    meta = [] if svc.open_meta else [Depends(project)]

    @app.get("/metrics", tags=["meta"], response_class=Response, dependencies=meta)
    async def metrics() -> Response:
        svc.metrics.set_queue_depth(await svc.store.queue_depth())
        svc.metrics.set_sessions(await svc.store.session_counts())
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False, dependencies=meta)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=meta)
    async def docs() -> HTMLResponse:
        # Its scripts from this server, not a CDN: /docs works with no internet.
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="slackwater API",
            swagger_js_url=f"/static/vendor/{ui.SWAGGER_JS}",
            swagger_css_url=f"/static/vendor/{ui.SWAGGER_CSS}",
            swagger_favicon_url="data:,",
        )

    @app.get("/health", tags=["meta"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app


class RequestIds:
    """Every answer names itself, as OpenAI's do (`x-request-id`): quote it when
    reporting a problem. Plain ASGI, so that the caller's disconnect still reaches the
    route (Starlette's BaseHTTPMiddleware would hide it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append("x-request-id", new_id("req"))
            await send(message)

        await self.app(scope, receive, named)


class DrainingServer(uvicorn.Server):
    """uvicorn, stopping within `drain_seconds` of SIGTERM or SIGINT whatever the engines
    are doing: in-flight calls get half the drain time, workers the rest (a chunk that
    cannot finish goes back to the queue), and a process still alive after it exits
    hard. Nothing is lost that way: what was not recorded is leased again."""

    def __init__(self, config: uvicorn.Config, drain_seconds: float) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self._watchdog: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._watchdog is None:
            self._watchdog = exit_after(self.drain_seconds + 2)
        super().handle_exit(sig, frame)


def serve(svc: Services, host: str, port: int, drain_seconds: float) -> None:
    config = uvicorn.Config(
        create_app(svc),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=max(1, int(drain_seconds / 2)),
    )
    DrainingServer(config, drain_seconds).run()
