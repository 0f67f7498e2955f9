"""The ledger: what each request cost where it ran, against the same tokens in real
time, summed by batch, project, pool, model, engine or day (money in nanodollars, exact:
docs/decisions/0005-ledger-in-nanodollars.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, select

from slackwater.domain.money import from_nano
from slackwater.ports import LEDGER_GROUPS, LedgerEntry, LedgerRow
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
