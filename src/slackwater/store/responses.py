"""Queued calls and stored responses.

A queued call (a background response, or a call on a tier that may wait) is one request
in the same queue as batch lines, by its deadline: workers lease, retry and record it
exactly as a batch line, and its `batch_id` is the call's id. A response (the Responses
API) is kept in `responses` for `GET`, `previous_response_id` and cancelling; a queued
one ends once its request has (`end_response`, which only moves a response still open,
so two processes ending it write once).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from slackwater.domain.bodies import PREFIX_CHARS, prefix_key
from slackwater.domain.errors import NotFound
from slackwater.domain.money import to_nano
from slackwater.domain.request import RequestStatus
from slackwater.domain.text import shown
from slackwater.domain.webhooks import RESPONSE_EVENTS
from slackwater.policy import fairness
from slackwater.ports import AnsweredCall, CallState, QueuedCall, StoredResponse
from slackwater.store import fair, ledger, outbox
from slackwater.store.database import Database
from slackwater.store.schema import requests, responses

OPEN_RESPONSE = ("queued", "in_progress")
_WAITING = (RequestStatus.PENDING.value, RequestStatus.RETRYING.value)
_UNFINISHED = (*_WAITING, RequestStatus.LEASED.value)
_STATUS = {status.value: status for status in RequestStatus}


def _stored(row: Any) -> StoredResponse:
    return StoredResponse(
        id=row.id,
        project=row.project,
        status=row.status,
        service_tier=row.service_tier,
        request=orjson.loads(row.request),
        created_at=row.created_at,
        queued=bool(row.queued),
        answer=orjson.loads(row.answer) if row.answer is not None else None,
        completed_at=row.completed_at,
    )


async def _insert_response(conn: AsyncConnection, response: StoredResponse) -> None:
    await conn.execute(
        insert(responses).values(
            id=response.id,
            project=response.project,
            status=response.status,
            service_tier=response.service_tier,
            request=orjson.dumps(response.request).decode(),
            answer=orjson.dumps(response.answer).decode() if response.answer else None,
            queued=int(response.queued),
            created_at=response.created_at,
            completed_at=response.completed_at,
        )
    )


class SqlResponses(Database):
    webhooks: bool = False  # the configured `webhook_url` hears every event

    async def enqueue_call(
        self, call: QueuedCall, now: datetime, response: StoredResponse | None = None
    ) -> None:
        async with self.writing() as conn:
            if response is not None:
                await _insert_response(conn, response)
            # A call is a one-line batch of its own in the fair queue: its project's
            # turn comes as a batch's first line would.
            start = fairness.batch_start(
                await fair.project_next(conn, call.project), await fair.virtual_time(conn)
            )
            await fair.set_project_next(conn, call.project, fairness.project_next(start, 1))
            await conn.execute(
                insert(requests).values(
                    batch_id=call.id,
                    line=1,
                    custom_id=call.id,
                    model=call.model,
                    endpoint=call.endpoint,
                    body=call.body,
                    status=RequestStatus.PENDING.value,
                    deadline=call.deadline,
                    urgency=fairness.urgency(call.deadline),
                    fair_rank=start + 1,
                    attempts=0,
                    project=call.project,
                    route=call.route,
                    tier=call.tier,
                    prefix=(
                        prefix_key(call.endpoint, orjson.loads(call.body))
                        if len(call.body) >= PREFIX_CHARS
                        else None
                    ),
                )
            )

    async def call_states(self, ids: Sequence[str]) -> dict[str, CallState]:
        if not ids:
            return {}
        query = select(
            requests.c.batch_id,
            requests.c.status,
            requests.c.status_code,
            requests.c.response,
            requests.c.route,
        ).where(requests.c.batch_id.in_(list(ids)))
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        return {
            call_id: CallState(
                call_id,
                _STATUS[status],
                code,
                answer.encode() if answer is not None else None,
                route,
            )
            for call_id, status, code, answer, route in rows
        }

    async def waiting_calls(self, tier: str) -> int:
        query = select(func.count()).where(requests.c.tier == tier, requests.c.status.in_(_WAITING))
        async with self.reading() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def cancel_call(self, call_id: str, now: datetime) -> bool:
        async with self.writing() as conn:
            # A leased one is cancelled too: its worker's settlement then writes nothing.
            result = await conn.execute(
                update(requests)
                .where(requests.c.batch_id == call_id, requests.c.status.in_(_UNFINISHED))
                .values(
                    status=RequestStatus.CANCELLED.value,
                    lease_id=None,
                    lease_expires_at=None,
                    finished_at=now,
                )
            )
            return bool(result.rowcount)

    async def record_calls(self, calls: Sequence[AnsweredCall]) -> None:
        if not calls:
            return
        rows = [
            {
                "batch_id": call.id,
                "line": 1,
                "custom_id": call.id,
                "model": call.model,
                "endpoint": call.endpoint,
                "body": "{}",  # what was asked is not kept: only what it cost
                "status": (
                    RequestStatus.SUCCEEDED
                    if 200 <= call.status_code < 300
                    else RequestStatus.FAILED
                ).value,
                "deadline": call.finished_at,
                "attempts": 1,
                "status_code": call.status_code,
                "finished_at": call.finished_at,
                "project": call.project,
                "tier": call.tier,
                "pool": call.charge.pool,
                "engine": call.charge.engine,
                "price": call.charge.price,
                "prompt_tokens": call.prompt_tokens,
                "completion_tokens": call.completion_tokens,
                "compute_us": round(call.charge.compute_seconds * 1_000_000),
                "cost_nano": to_nano(call.charge.cost),
                "realtime_nano": to_nano(call.charge.realtime_cost),
            }
            for call in calls
        ]
        async with self.writing() as conn:
            await conn.execute(insert(requests), rows)

    async def add_response(self, response: StoredResponse) -> None:
        async with self.writing() as conn:
            await _insert_response(conn, response)

    async def get_response(self, project: str | None, response_id: str) -> StoredResponse:
        query = select(responses).where(responses.c.id == response_id)
        if project is not None:
            query = query.where(responses.c.project == project)
        async with self.reading() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(
                f"Response with id '{shown(response_id)}' not found.", param="response_id"
            )
        return _stored(row)

    async def open_responses(self, limit: int) -> list[StoredResponse]:
        query = (
            select(responses)
            .where(responses.c.queued == 1, responses.c.status.in_(OPEN_RESPONSE))
            .order_by(responses.c.created_at)
            .limit(limit)
        )
        async with self.reading() as conn:
            return [_stored(row) for row in (await conn.execute(query)).all()]

    async def end_response(
        self, response_id: str, status: str, answer: dict[str, Any], now: datetime
    ) -> bool:
        async with self.writing() as conn:
            project = (
                await conn.execute(
                    update(responses)
                    .where(responses.c.id == response_id, responses.c.status.in_(OPEN_RESPONSE))
                    .values(status=status, answer=orjson.dumps(answer).decode(), completed_at=now)
                    .returning(responses.c.project)
                )
            ).scalar()
            if project is None:
                return False
            # As OpenAI's: events for background responses (a caller waits for the rest).
            if status in RESPONSE_EVENTS and answer.get("background") is True:
                await outbox.enqueue(
                    conn, project, response_id, RESPONSE_EVENTS[status], now,
                    configured=self.webhooks,
                )  # fmt: skip
            return True

    async def delete_response(self, project: str, response_id: str) -> None:
        async with self.writing() as conn:
            result = await conn.execute(
                delete(responses).where(
                    responses.c.id == response_id, responses.c.project == project
                )
            )
            if not result.rowcount:
                raise NotFound(
                    f"Response with id '{shown(response_id)}' not found.", param="response_id"
                )
            # Its queued request goes too; a worker running it records nothing.
            # What it cost stays in the ledger's totals.
            await ledger.fold_unrolled(conn, requests.c.batch_id == response_id)
            await conn.execute(delete(requests).where(requests.c.batch_id == response_id))
