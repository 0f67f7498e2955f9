"""FastAPI dependencies: the process's Services and the caller's project."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from slackwater.runtime.services import Services


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def project(request: Request) -> str:
    checked: str = await request.app.state.key_check(request)
    return checked


Project = Annotated[str, Depends(project)]
