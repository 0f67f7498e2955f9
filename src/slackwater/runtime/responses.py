"""The Responses API: a response answered in the call (a real-time tier), or queued (in
the background, or on a tier that may wait) and read, cancelled or deleted by its id.

A queued response is a call in the queue (`CallQueue`) and a row in the store; it ends
when its request does, at the first of: a caller reading it, the caller that waits for
it, or the loop here that looks at open responses every `settle_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any

from slackwater.domain import responses
from slackwater.domain.batch import Endpoint
from slackwater.domain.bodies import EXTENSION
from slackwater.domain.errors import InvalidRequest, NotFound
from slackwater.domain.ids import new_id
from slackwater.domain.request import Outcome, RequestStatus
from slackwater.domain.tiers import ServiceTier, tier_named
from slackwater.ports import CallState, CallStore, Clock, StoredResponse
from slackwater.runtime.calls import ENDED, CallQueue, outcome_of
from slackwater.runtime.engines import EngineSet
from slackwater.runtime.realtime import Realtime, refuse

log = logging.getLogger(__name__)

OPEN = ("queued", "in_progress")


@dataclass
class Answering:
    """A call answered in the request: the work, and how long it may take at most (its
    tier's window, then the compute budget)."""

    work: Coroutine[Any, Any, Outcome]
    seconds: float


class ResponseService:
    def __init__(
        self,
        store: CallStore,
        calls: CallQueue,
        realtime: Realtime,
        engines: EngineSet,
        tiers: Mapping[str, ServiceTier],
        clock: Clock,
        *,
        request_seconds: float = 300.0,
        settle_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.calls = calls
        self.realtime = realtime
        self.engines = engines
        self.tiers = tiers
        self.clock = clock
        self.request_seconds = request_seconds
        self.settle_seconds = settle_seconds
        self.stopping = asyncio.Event()

    async def create(self, project: str, body: dict[str, Any]) -> dict[str, Any] | Answering:
        """A background response at once (queued), else the work that answers the call.
        Raises what is wrong with the body before anything is queued or run."""
        tier = tier_named(self.tiers, body.get("service_tier"))
        background = body.get("background") is True
        stored = body.get("store", True) is not False
        if body.get("stream"):
            raise InvalidRequest(
                "stream is not supported on /v1/responses; use background: true and poll",
                param="stream",
            )
        if background and not stored:
            raise InvalidRequest(
                "a background response must be stored: leave store out or set it to true",
                param="store",
            )
        if errors := responses.check(body):
            raise refuse(errors[0])
        body = await self._continued(project, body)
        ready = await self.realtime.prepare(Endpoint.RESPONSES, body)
        request = {**ready.body, "service_tier": tier.name}
        if tier.realtime and not background:
            work = self._now(project, ready.model.name, request, ready.route, tier, stored)
            return Answering(work, self.request_seconds)
        now = self.clock()
        response_id = new_id("resp")
        row = (
            StoredResponse(response_id, project, "queued", tier.name, request, now, queued=True)
            if stored
            else None
        )
        call = await self.calls.put(
            tier,
            project=project,
            model=ready.model.name,
            endpoint=Endpoint.RESPONSES,
            body=request,
            route=ready.route,
            call_id=response_id,
            response=row,
        )
        if background:
            return responses.response_of(
                request,
                id=response_id,
                status="queued",
                created_at=int(now.timestamp()),
                service_tier=tier.name,
            )
        return Answering(
            self._waited(call.id, request, row, now.timestamp()),
            tier.window_seconds + self.request_seconds,
        )

    async def _continued(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        """The body with the conversation of its `previous_response_id` before its input."""
        earlier_id = body.get("previous_response_id")
        if earlier_id is None:
            return body
        if not isinstance(earlier_id, str):
            raise InvalidRequest(
                "previous_response_id must be a string", param="previous_response_id"
            )
        try:
            earlier = await self.get(project, earlier_id)
        except NotFound as exc:
            raise NotFound(exc.message, param="previous_response_id") from None
        if earlier["status"] not in ("completed", "incomplete"):
            raise InvalidRequest(
                f"previous response {earlier_id} is {earlier['status']}: "
                "only one that has completed can be continued",
                param="previous_response_id",
            )
        stored = await self.store.get_response(project, earlier_id)
        return responses.continued(body, stored.request, earlier)

    async def _now(
        self,
        project: str,
        model: str,
        request: dict[str, Any],
        route: dict[str, Any] | None,
        tier: ServiceTier,
        stored: bool,
    ) -> Outcome:
        [outcome] = await self.engines.run(
            model, Endpoint.RESPONSES, [request], realtime=True, project=project, tier=tier.name
        )
        if not outcome.ok:
            return outcome
        answer = {**outcome.body, "service_tier": tier.name}
        if stored:
            now = self.clock()
            await self.store.add_response(
                StoredResponse(
                    answer["id"],
                    project,
                    answer["status"],
                    tier.name,
                    request,
                    now,
                    answer=answer,
                    completed_at=now,
                )
            )
        if route is not None:
            answer = {**answer, EXTENSION: {"route": route}}
        return replace(outcome, body=answer)

    async def _waited(
        self,
        call_id: str,
        request: dict[str, Any],
        row: StoredResponse | None,
        created: float,
    ) -> Outcome:
        """A call on a tier that may wait, answered in the call (OpenAI's flex)."""
        call_outcome = await self.calls.answer(call_id)
        if not call_outcome.ok:
            if row is not None:
                with contextlib.suppress(Exception):
                    await self._end(row, call_outcome, cancelled=False)
            return call_outcome
        if row is not None:
            answer = await self._end(row, call_outcome, cancelled=False)
        else:
            answer = self._final(request, call_id, int(created), call_outcome, cancelled=False)
        return Outcome(200, answer, usage=call_outcome.usage)

    def _final(
        self,
        request: dict[str, Any],
        response_id: str,
        created_at: int,
        outcome: Outcome,
        *,
        cancelled: bool,
    ) -> dict[str, Any]:
        return responses.ended(
            request,
            id=response_id,
            created_at=created_at,
            completed_at=int(self.clock().timestamp()),
            service_tier=str(request.get("service_tier") or "default"),
            status_code=outcome.status_code,
            body=outcome.body,
            cancelled=cancelled,
        )

    async def _end(
        self, row: StoredResponse, outcome: Outcome, *, cancelled: bool
    ) -> dict[str, Any]:
        """End a stored response with its request's outcome; if it has ended already
        (elsewhere), its answer as it ended there."""
        answer = self._final(
            row.request, row.id, int(row.created_at.timestamp()), outcome, cancelled=cancelled
        )
        if await self.store.end_response(row.id, answer["status"], answer, self.clock()):
            return answer
        ended = await self.store.get_response(None, row.id)
        return ended.answer or answer

    async def _settled(self, row: StoredResponse, state: CallState | None) -> dict[str, Any]:
        if state is not None and state.status in ENDED:
            return await self._end(
                row, outcome_of(state), cancelled=state.status is RequestStatus.CANCELLED
            )
        running = state is not None and state.status is RequestStatus.LEASED
        return responses.response_of(
            row.request,
            id=row.id,
            status="in_progress" if running else "queued",
            created_at=int(row.created_at.timestamp()),
            service_tier=row.service_tier,
        )

    async def get(self, project: str, response_id: str) -> dict[str, Any]:
        row = await self.store.get_response(project, response_id)
        if row.status in OPEN and row.queued:
            states = await self.store.call_states([row.id])
            return await self._settled(row, states.get(row.id))
        assert row.answer is not None, "an ended response has its answer"
        return row.answer

    async def cancel(self, project: str, response_id: str) -> dict[str, Any]:
        row = await self.store.get_response(project, response_id)
        if not row.request.get("background"):
            raise InvalidRequest("only a background response can be cancelled", param="response_id")
        if row.status in OPEN:
            await self.store.cancel_call(row.id, self.clock())
        return await self.get(project, response_id)

    async def delete(self, project: str, response_id: str) -> dict[str, Any]:
        await self.store.delete_response(project, response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    async def settle(self, limit: int = 500) -> int:
        """End the open responses whose requests have ended; returns how many."""
        open_rows = await self.store.open_responses(limit)
        if not open_rows:
            return 0
        states = await self.store.call_states([row.id for row in open_rows])
        ended = 0
        for row in open_rows:
            state = states.get(row.id)
            if state is not None and state.status in ENDED:
                await self._settled(row, state)
                ended += 1
        return ended

    async def run(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.settle()
            except Exception:
                log.exception("could not settle open responses")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.settle_seconds)

    def stop(self) -> None:
        self.stopping.set()
