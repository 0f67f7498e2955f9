"""The FastAPI application for a Services instance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST

from slackwater import __version__
from slackwater.api import batches, errors, files, inference
from slackwater.api.auth import KeyCheck
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

    app = FastAPI(title="slackwater", version=__version__, lifespan=lifespan)
    app.state.services = svc
    app.state.key_check = KeyCheck(svc.store)
    errors.install(app)
    app.include_router(files.router)
    app.include_router(batches.router)
    app.include_router(inference.router)

    @app.get("/metrics", tags=["meta"], response_class=Response)
    async def metrics() -> Response:
        svc.metrics.set_queue_depth(await svc.store.queue_depth())
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health", tags=["meta"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
