"""FunctionEngine: an engine whose work is one function, `handler(endpoint, bodies) ->
outcomes` (plain or async), in the spirit of httpx's MockTransport.

For tests (a fake that answers exactly as a test needs) and for wrapping any Python
callable as a model. Register it under a name and point models at it:

    register_engine("echo", lambda model: FunctionEngine(model, handler))

The handler gets the bodies of one engine call and returns one Outcome per body, in
order; an EngineError it raises fails the whole call, as a real engine's would.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from slackwater.domain.errors import EngineError
from slackwater.domain.model import Model
from slackwater.domain.request import Outcome

Handler = Callable[[str, list[dict[str, Any]]], Sequence[Outcome] | Awaitable[Sequence[Outcome]]]


class FunctionEngine:
    def __init__(self, model: Model, handler: Handler, *, serial: bool = False) -> None:
        self.model = model
        self.handler = handler
        self.serial = serial

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def run(self, endpoint: str, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        answer = self.handler(endpoint, list(bodies))
        outcomes = list(await answer if inspect.isawaitable(answer) else answer)
        if len(outcomes) != len(bodies):
            raise EngineError(
                f"the handler of {self.model.name} returned {len(outcomes)} outcomes "
                f"for {len(bodies)} requests"
            )
        return outcomes
