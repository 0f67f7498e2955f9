"""What every dashboard page shares: the router they register on, the templates, the
signed-in project, and small formatting helpers."""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files as package_files
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.templating import Jinja2Templates

from slackwater.api.deps import services
from slackwater.domain.errors import AuthenticationError, PermissionDenied
from slackwater.runtime.services import Services

router = APIRouter(prefix="/ui", include_in_schema=False)
STATIC = package_files("slackwater.api") / "static"
templates = Jinja2Templates(directory=str(package_files("slackwater.api") / "templates"))
Svc = Annotated[Services, Depends(services)]
PAGE = 50
SWAGGER_JS, SWAGGER_CSS = "swagger-ui-bundle-5.35.0.js", "swagger-ui-5.35.0.css"


class SignIn(Exception):
    """The browser has no (valid) key: send it to the sign-in page."""


async def ui_project(request: Request) -> str:
    try:
        project: str = await request.app.state.key_check(request)
    except AuthenticationError as exc:  # a key's scope refusing a button is a 403
        raise SignIn() from exc
    return project


Project = Annotated[str, Depends(ui_project)]


def same_origin(request: Request) -> None:
    """A form posted from another site (cross-site request forgery) is refused."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
        raise PermissionDenied("the dashboard takes its forms from its own pages only")


def ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return ""
    seconds = (when - now).total_seconds()
    span = abs(seconds)
    text = (
        f"{span:.0f} s" if span < 120 else f"{span / 60:.0f} min" if span < 7200 else
        f"{span / 3600:.1f} h"
    )  # fmt: skip
    return f"in {text}" if seconds > 0 else f"{text} ago"
