"""A realtime call, made ready to run: its body checked, its route resolved, its model
found, and its prompt admitted (it fits the context) -- the same for every API that
answers in real time (OpenAI's, Anthropic's)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from slackwater.domain.batch import LineError
from slackwater.domain.bodies import EXTENSION, parse_body
from slackwater.domain.errors import InvalidRequest, NotFound, SlackwaterError
from slackwater.domain.model import Catalog, Model, Tier
from slackwater.runtime.admission import Admission
from slackwater.runtime.routing import AutoRouter


def refuse(error: LineError) -> SlackwaterError:
    """A body's problem as a realtime API reports it (params are top-level names)."""
    param = error.param.removeprefix("body.") if error.param else None
    kind = NotFound if error.code == "model_not_found" else InvalidRequest
    return kind(error.message, param=param, code=error.code)


@dataclass(frozen=True)
class Ready:
    model: Model
    body: dict[str, Any]  # what the engine runs: the chosen model, no `slackwater` field
    route: dict[str, Any] | None  # the route record, for a body that asked for a route


class Realtime:
    def __init__(self, catalog: Catalog, router: AutoRouter | None, admission: Admission) -> None:
        self.catalog = catalog
        self.router = router
        self.admission = admission

    async def prepare(self, endpoint: str, body: dict[str, Any]) -> Ready:
        """Raises what is wrong with the call, before any engine work."""
        parsed = parse_body(endpoint, body)
        if isinstance(parsed, list):
            raise refuse(parsed[0])
        route: dict[str, Any] | None = None
        if self.router is not None and self.router.named(parsed["model"]) is not None:
            # Off the event loop: the learned router embeds the prompt.
            routed = await asyncio.to_thread(
                self.router.resolve_one, endpoint, body, tier=Tier.REALTIME
            )
            body, route = routed.body, routed.route.to_dict()
        body = {k: v for k, v in body.items() if k != EXTENSION}
        model = self.catalog.serving(body["model"], endpoint)
        if isinstance(model, LineError):
            raise refuse(model)
        # A prompt past the context would hold the model for nothing.
        too_long = await asyncio.to_thread(self.admission.check, model, endpoint, body)
        if too_long is not None:
            raise refuse(too_long)
        return Ready(model, body, route)
