"""The dashboard at /ui: server-rendered pages (Jinja2) kept live by htmx fragments
(ADR 14). A browser signs in with an API key once; the key rides in a cookie read only
on /ui paths, and every page shows the key's project only. Each page is a module that
registers on the one router."""

from slackwater.api.ui import (  # noqa: F401  (importing a page registers it)
    batches,
    capacity,
    cost,
    predictions,
    routing,
    sessions,
    signin,
)
from slackwater.api.ui.common import STATIC, SWAGGER_CSS, SWAGGER_JS, SignIn, router

__all__ = ["STATIC", "SWAGGER_CSS", "SWAGGER_JS", "SignIn", "router"]
