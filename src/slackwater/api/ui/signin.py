"""Signing in with an API key (kept in a cookie read only on /ui paths) and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from slackwater.api.auth import UI_COOKIE as COOKIE
from slackwater.api.ui.common import Svc, router, same_origin, templates
from slackwater.runtime.keys import hash_key


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, error: str = "") -> Response:
    return templates.TemplateResponse(request, "login.html", {"error": error})


@router.post("/login")
async def login(request: Request, svc: Svc, key: Annotated[str, Form()]) -> Response:
    same_origin(request)
    found = await svc.store.key_for(hash_key(key.strip()), svc.clock())
    if found is None:
        return templates.TemplateResponse(
            request, "login.html", {"error": "That key is not valid."}, status_code=401
        )
    answer = RedirectResponse("/ui/batches", status_code=303)
    answer.set_cookie(
        COOKIE, key.strip(), httponly=True, samesite="strict", path="/ui", max_age=7 * 86400
    )
    return answer


@router.get("/logout")
async def logout() -> Response:
    answer = RedirectResponse("/ui/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/ui")
    return answer


@router.get("")
async def home() -> Response:
    return RedirectResponse("/ui/batches", status_code=303)
