"""The ledger: what each request cost where it ran, against the same tokens in real
time, summed by batch, project, pool, model, engine or day (money in nanodollars, exact:
docs/decisions/0005-ledger-in-nanodollars.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, case, func, literal, select

from slackwater.domain.money import from_nano
from slackwater.domain.request import RequestStatus
from slackwater.ports import LEDGER_GROUPS, LedgerEntry, LedgerRow, RequestView
from slackwater.store.database import Database
from slackwater.store.schema import requests

_a_batch = requests.c.batch_id.startswith("batch_", autoescape=True)  # not a call


class SqlLedger(Database):
    async def ledger(
        self,
        by: str,
        project: str | None = None,
        since: datetime | None = None,
        *,
        session: str | None = None,
    ) -> list[LedgerRow]:
        if by == "day":
            finished = requests.c.finished_at
            key: Any = (
                func.date(finished)
                if self.dialect == "sqlite"
                else func.to_char(func.timezone("UTC", finished), "YYYY-MM-DD")
            )
        elif by == "batch":
            # Calls (answered in real time or queued, on the batch tier too) are one line
            # per tier, not per call.
            key = case(
                (and_(requests.c.tier == "batch", _a_batch), requests.c.batch_id),
                else_=literal("calls:") + requests.c.tier,
            )
        elif by == "session":
            # A session's inferences are calls named `<session id>.<place>`.
            batch = requests.c.batch_id
            key = (
                func.substr(batch, 1, func.instr(batch, ".") - 1)
                if self.dialect == "sqlite"
                else func.split_part(batch, ".", 1)
            )
        elif by in LEDGER_GROUPS:
            key = requests.c[LEDGER_GROUPS[by]]
        else:
            raise ValueError(f"cannot group the ledger by {by!r}")
        query = (
            select(
                key.label("key"),
                func.count().label("requests"),
                func.sum(requests.c.prompt_tokens).label("prompt_tokens"),
                func.sum(requests.c.completion_tokens).label("completion_tokens"),
                func.sum(requests.c.compute_us).label("compute_us"),
                func.sum(requests.c.cost_nano).label("cost_nano"),
                func.sum(requests.c.realtime_nano).label("realtime_nano"),
            )
            .where(requests.c.cost_nano.is_not(None))
            .group_by(key)
            .order_by(key)
        )
        if by == "session":
            query = query.where(requests.c.batch_id.like("sess\\_%.%", escape="\\"))
        if session is not None:
            query = query.where(requests.c.batch_id.startswith(f"{session}.", autoescape=True))
        if project is not None:
            query = query.where(requests.c.project == project)
        if since is not None:
            query = query.where(requests.c.finished_at >= since)
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [
            LedgerRow(
                key=str(row.key),
                requests=row.requests,
                prompt_tokens=int(row.prompt_tokens or 0),
                completion_tokens=int(row.completion_tokens or 0),
                compute_seconds=int(row.compute_us or 0) / 1_000_000,
                cost=from_nano(int(row.cost_nano or 0)),
                realtime_cost=from_nano(int(row.realtime_nano or 0)),
            )
            for row in rows
        ]

    async def ledger_entries(self, batch_id: str, limit: int) -> list[LedgerEntry]:
        query = (
            select(
                requests.c.custom_id,
                requests.c.model,
                requests.c.engine,
                requests.c.pool,
                requests.c.prompt_tokens,
                requests.c.completion_tokens,
                requests.c.compute_us,
                requests.c.price,
                requests.c.cost_nano,
                requests.c.realtime_nano,
            )
            .where(requests.c.batch_id == batch_id, requests.c.cost_nano.is_not(None))
            .order_by(requests.c.line)
            .limit(limit)
        )
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [
            LedgerEntry(
                custom_id=r.custom_id,
                model=r.model,
                engine=r.engine,
                pool=r.pool,
                prompt_tokens=int(r.prompt_tokens or 0),
                completion_tokens=int(r.completion_tokens or 0),
                compute_seconds=int(r.compute_us or 0) / 1_000_000,
                price=r.price,
                cost=from_nano(int(r.cost_nano or 0)),
                realtime_cost=from_nano(int(r.realtime_nano or 0)),
            )
            for r in rows
        ]

    async def batch_requests(
        self,
        batch_id: str,
        *,
        after_line: int = 0,
        limit: int = 50,
        custom_id: str | None = None,
        failed_only: bool = False,
    ) -> list[RequestView]:
        query = (
            select(
                requests.c.line,
                requests.c.custom_id,
                requests.c.model,
                requests.c.status,
                requests.c.attempts,
                requests.c.status_code,
                requests.c.response,
                requests.c.route,
                requests.c.pool,
                requests.c.cost_nano,
                requests.c.realtime_nano,
            )
            .where(requests.c.batch_id == batch_id, requests.c.line > after_line)
            .order_by(requests.c.line)
            .limit(limit)
        )
        if custom_id:
            query = query.where(requests.c.custom_id.contains(custom_id, autoescape=True))
        if failed_only:
            query = query.where(
                requests.c.status.in_([RequestStatus.FAILED.value, RequestStatus.RETRYING.value])
            )
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [
            RequestView(
                line=r.line,
                custom_id=r.custom_id,
                model=r.model,
                status=r.status,
                attempts=r.attempts,
                status_code=r.status_code,
                error=_error_message(r.response)
                if r.status_code and r.status_code >= 400
                else None,
                route=r.route,
                pool=r.pool,
                cost=from_nano(r.cost_nano) if r.cost_nano is not None else None,
                realtime_cost=from_nano(r.realtime_nano) if r.realtime_nano is not None else None,
            )
            for r in rows
        ]

    async def recent_routes(self, project: str, limit: int) -> list[str]:
        query = (
            select(requests.c.route)
            .where(requests.c.project == project, requests.c.route.is_not(None))
            .order_by(requests.c.id.desc())
            .limit(limit)
        )
        async with self.reading() as conn:
            return [route for (route,) in (await conn.execute(query)).all()]


def _error_message(response: str | None) -> str | None:
    if not response:
        return None
    try:
        error = orjson.loads(response).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return response[:200]
    return str(error.get("message") or error)[:500]
