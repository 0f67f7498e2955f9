"""Sessions: durable agent runs, their journals, the calls and events they wait for.

A worker takes a due session (`claim_sessions`: queued, a timer that has run out, or a
lease that has) and holds it by a lease; what it journals, and how it leaves the
session (waiting or ended), counts only while it still owns it, so a worker that lost
its lease to another writes nothing. One index, (status, wake_at), finds every due
session, however many wait.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from slackwater.domain.errors import Conflict, InvalidRequest, NotFound
from slackwater.domain.request import RequestStatus
from slackwater.domain.sessions import Entry, EntryKind, Session, SessionStatus, Waiting
from slackwater.domain.text import shown
from slackwater.ports import Page
from slackwater.store.database import Database
from slackwater.store.schema import (
    requests,
    session_calls,
    session_events,
    session_journal,
    sessions,
)

_UNFINISHED = (
    RequestStatus.PENDING.value,
    RequestStatus.RETRYING.value,
    RequestStatus.LEASED.value,
)
_LIVE = (SessionStatus.QUEUED.value, SessionStatus.RUNNING.value, SessionStatus.WAITING.value)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _session(row: Any) -> Session:
    waiting = None
    if row.status == SessionStatus.WAITING and (row.wait_until or row.wait_event):
        waiting = Waiting(until=row.wait_until, event=row.wait_event)
    return Session(
        id=row.id,
        project=row.project,
        agent=row.agent,
        version=row.version,
        arguments=orjson.loads(row.arguments),
        status=SessionStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        steps=row.steps,
        waiting=waiting,
        result=orjson.loads(row.result) if row.result is not None else None,
        error=orjson.loads(row.error) if row.error is not None else None,
        owner=row.owner,
        lease_expires_at=row.wake_at if row.status == SessionStatus.RUNNING else None,
        active_seconds=row.active_seconds,
        finished_at=row.finished_at,
        forked_from=row.forked_from,
        forked_at=row.forked_at,
    )


def _entry(row: Any) -> Entry:
    return Entry(
        seq=row.seq,
        kind=EntryKind(row.kind),
        name=row.name,
        value=orjson.loads(row.value) if row.value is not None else None,
        blob=row.blob,
        created_at=row.created_at,
    )


def _not_found(session_id: str) -> NotFound:
    return NotFound(f"No session with id '{shown(session_id)}'", param="session_id")


def _owned(session_id: str, owner: str) -> Any:
    return and_(
        sessions.c.id == session_id,
        sessions.c.owner == owner,
        sessions.c.status == SessionStatus.RUNNING.value,
    )


async def wake_waiters(conn: AsyncConnection, call_ids: Sequence[str], now: datetime) -> int:
    """Queue the waiting sessions whose last unfinished calls are among `call_ids` (in
    the transaction that settles them); how many were woken."""
    waiters = (
        await conn.execute(
            select(session_calls.c.session_id)
            .where(session_calls.c.call_id.in_(list(call_ids)))
            .distinct()
        )
    ).all()
    woken = 0
    for (session_id,) in waiters:
        mine = select(session_calls.c.call_id).where(session_calls.c.session_id == session_id)
        still = await conn.execute(
            select(func.count()).where(
                requests.c.batch_id.in_(mine), requests.c.status.in_(_UNFINISHED)
            )
        )
        if still.scalar_one():
            continue
        result = await conn.execute(
            update(sessions)
            .where(sessions.c.id == session_id, sessions.c.status == SessionStatus.WAITING.value)
            .values(status=SessionStatus.QUEUED.value, wake_at=now, updated_at=now)
        )
        await conn.execute(session_calls.delete().where(session_calls.c.session_id == session_id))
        woken += result.rowcount
    return woken


class SqlSessions(Database):
    async def add_session(self, session: Session) -> None:
        async with self.writing() as conn:
            await self._insert_session(conn, session)

    async def _insert_session(self, conn: AsyncConnection, session: Session) -> None:
        await conn.execute(
            insert(sessions).values(
                id=session.id,
                project=session.project,
                agent=session.agent,
                version=session.version,
                arguments=_json(session.arguments),
                status=session.status.value,
                steps=session.steps,
                wake_at=session.created_at,
                forked_from=session.forked_from,
                forked_at=session.forked_at,
                created_at=session.created_at,
                updated_at=session.updated_at,
            )
        )

    async def get_session(self, project: str | None, session_id: str) -> Session:
        query = select(sessions).where(sessions.c.id == session_id)
        if project is not None:
            query = query.where(sessions.c.project == project)
        async with self.reading() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise _not_found(session_id)
        return _session(row)

    async def list_sessions(self, project: str, *, limit: int, after: str | None) -> Page:
        query = select(sessions).where(sessions.c.project == project)
        return await self.page(query, sessions.c.id, limit=limit, after=after, convert=_session)

    async def session_counts(self) -> dict[tuple[str, str], int]:
        query = (
            select(sessions.c.agent, sessions.c.status, func.count())
            .where(sessions.c.status.in_(_LIVE))
            .group_by(sessions.c.agent, sessions.c.status)
        )
        async with self.reading() as conn:
            rows = (await conn.execute(query)).all()
        return {(agent, status): count for agent, status, count in rows}

    async def claim_sessions(
        self, owner: str, now: datetime, lease_seconds: float, limit: int
    ) -> list[Session]:
        due = (
            select(sessions.c.id)
            .where(sessions.c.status.in_(_LIVE), sessions.c.wake_at <= now)
            .order_by(sessions.c.wake_at)
            .limit(limit)
        )
        if self.skip_locked:
            due = due.with_for_update(skip_locked=True)
        async with self.writing() as conn:
            ids = [row.id for row in (await conn.execute(due)).all()]
            if not ids:
                return []
            await conn.execute(
                update(sessions)
                .where(sessions.c.id.in_(ids))
                .values(
                    status=SessionStatus.RUNNING.value,
                    owner=owner,
                    wake_at=now + timedelta(seconds=lease_seconds),
                    updated_at=now,
                )
            )
            rows = (await conn.execute(select(sessions).where(sessions.c.id.in_(ids)))).all()
        return [_session(row) for row in rows]

    async def hold_session(
        self, session_id: str, owner: str, now: datetime, lease_seconds: float
    ) -> bool:
        async with self.writing() as conn:
            result = await conn.execute(
                update(sessions)
                .where(_owned(session_id, owner))
                .values(wake_at=now + timedelta(seconds=lease_seconds))
            )
        return bool(result.rowcount)

    async def journal(self, session_id: str) -> list[Entry]:
        query = (
            select(session_journal)
            .where(session_journal.c.session_id == session_id)
            .order_by(session_journal.c.seq)
        )
        async with self.reading() as conn:
            return [_entry(row) for row in (await conn.execute(query)).all()]

    async def append_entry(
        self,
        session_id: str,
        owner: str,
        entry: Entry,
        now: datetime,
        *,
        event_id: int | None = None,
    ) -> bool:
        async with self.writing() as conn:
            # Only the owner, and only at the journal's end: a worker that lost its lease
            # (or replays behind another) adds nothing.
            moved = await conn.execute(
                update(sessions)
                .where(_owned(session_id, owner), sessions.c.steps == entry.seq)
                .values(steps=entry.seq + 1, updated_at=now)
            )
            if not moved.rowcount:
                return False
            await conn.execute(
                insert(session_journal).values(
                    session_id=session_id,
                    seq=entry.seq,
                    kind=entry.kind.value,
                    name=entry.name,
                    value=_json(entry.value) if entry.blob is None else None,
                    blob=entry.blob,
                    created_at=now,
                )
            )
            if event_id is not None:
                await conn.execute(
                    update(session_events)
                    .where(session_events.c.id == event_id)
                    .values(taken=entry.seq)
                )
        return True

    async def suspend_session(
        self, session_id: str, owner: str, waiting: Waiting, now: datetime, active: float
    ) -> bool:
        async with self.writing() as conn:
            ready = False
            if waiting.event is not None:
                ready = await self._open_event(conn, session_id, waiting.event) is not None
            if waiting.calls:
                # Locked: a worker recording one of these calls meanwhile either settles
                # it before this reads it, or waits for this transaction and then finds
                # the session among the calls' waiters (PostgreSQL reads committed rows).
                states = await conn.execute(
                    select(requests.c.status)
                    .where(requests.c.batch_id.in_(list(waiting.calls)))
                    .with_for_update()
                )
                ready = ready or not any(s in _UNFINISHED for (s,) in states.all())
            if waiting.until is not None and waiting.until <= now:
                ready = True
            status = SessionStatus.QUEUED if ready else SessionStatus.WAITING
            result = await conn.execute(
                update(sessions)
                .where(_owned(session_id, owner))
                .values(
                    status=status.value,
                    owner=None,
                    wait_until=waiting.until,
                    wait_event=waiting.event,
                    wake_at=now if ready else waiting.until,
                    active_seconds=sessions.c.active_seconds + active,
                    updated_at=now,
                )
            )
            if not result.rowcount:
                return False
            if waiting.calls and not ready:
                await conn.execute(
                    self.upsert(session_calls).on_conflict_do_nothing(),
                    [{"call_id": call, "session_id": session_id} for call in waiting.calls],
                )
        return True

    async def wake_for_calls(self, call_ids: Sequence[str], now: datetime) -> int:
        if not call_ids:
            return 0
        async with self.writing() as conn:
            return await wake_waiters(conn, call_ids, now)

    async def end_session(
        self,
        session_id: str,
        owner: str,
        status: SessionStatus,
        now: datetime,
        active: float,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        if not status.ended:
            raise ValueError(f"{status} is not an end")
        async with self.writing() as conn:
            ended = await conn.execute(
                update(sessions)
                .where(_owned(session_id, owner))
                .values(
                    status=status.value,
                    owner=None,
                    wake_at=None,
                    result=_json(result) if result is not None else None,
                    error=_json(error) if error is not None else None,
                    active_seconds=sessions.c.active_seconds + active,
                    updated_at=now,
                    finished_at=now,
                )
            )
        return bool(ended.rowcount)

    async def send_event(
        self, project: str, session_id: str, key: str, payload: Any, now: datetime
    ) -> None:
        async with self.writing() as conn:
            row = (
                await conn.execute(
                    select(sessions.c.status, sessions.c.wait_event).where(
                        sessions.c.id == session_id, sessions.c.project == project
                    )
                )
            ).first()
            if row is None:
                raise _not_found(session_id)
            if SessionStatus(row.status).ended:
                raise Conflict(
                    f"session {session_id} has {row.status}: it takes no more events",
                    param="session_id",
                )
            await conn.execute(
                insert(session_events).values(
                    session_id=session_id, key=key, payload=_json(payload), created_at=now
                )
            )
            if row.status == SessionStatus.WAITING and row.wait_event == key:
                await conn.execute(
                    update(sessions)
                    .where(
                        sessions.c.id == session_id,
                        sessions.c.status == SessionStatus.WAITING.value,
                    )
                    .values(status=SessionStatus.QUEUED.value, wake_at=now, updated_at=now)
                )

    async def take_event(self, session_id: str, key: str) -> tuple[int, Any] | None:
        async with self.reading() as conn:
            return await self._open_event(conn, session_id, key)

    async def _open_event(
        self, conn: AsyncConnection, session_id: str, key: str
    ) -> tuple[int, Any] | None:
        """The oldest event of `key` not taken yet: (its id, its payload)."""
        row = (
            await conn.execute(
                select(session_events.c.id, session_events.c.payload)
                .where(
                    session_events.c.session_id == session_id,
                    session_events.c.key == key,
                    session_events.c.taken.is_(None),
                )
                .order_by(session_events.c.id)
                .limit(1)
            )
        ).first()
        return (int(row.id), orjson.loads(row.payload)) if row is not None else None

    async def cancel_session(self, project: str, session_id: str, now: datetime) -> Session:
        async with self.writing() as conn:
            result = await conn.execute(
                update(sessions)
                .where(
                    sessions.c.id == session_id,
                    sessions.c.project == project,
                    sessions.c.status.in_(_LIVE),
                )
                .values(
                    status=SessionStatus.CANCELLED.value,
                    owner=None,
                    wake_at=None,
                    updated_at=now,
                    finished_at=now,
                )
            )
            if result.rowcount:
                # Nobody will read the answers of the calls it waited for.
                mine = select(session_calls.c.call_id).where(
                    session_calls.c.session_id == session_id
                )
                await conn.execute(
                    update(requests)
                    .where(requests.c.batch_id.in_(mine), requests.c.status.in_(_UNFINISHED))
                    .values(
                        status=RequestStatus.CANCELLED.value,
                        lease_id=None,
                        lease_expires_at=None,
                        finished_at=now,
                    )
                )
                await conn.execute(
                    session_calls.delete().where(session_calls.c.session_id == session_id)
                )
        session = await self.get_session(project, session_id)
        if not result.rowcount and session.status != SessionStatus.CANCELLED:
            raise Conflict(f"session {session_id} has {session.status}", param="session_id")
        return session

    async def fork_session(
        self, project: str, session_id: str, upto: int, fork: Session
    ) -> Session:
        async with self.writing() as conn:
            row = (
                await conn.execute(
                    select(sessions).where(
                        sessions.c.id == session_id, sessions.c.project == project
                    )
                )
            ).first()
            if row is None:
                raise _not_found(session_id)
            if not 0 <= upto <= row.steps:
                raise InvalidRequest(
                    f"session {session_id} has {row.steps} journal entries: "
                    f"it cannot be forked at {upto}",
                    param="upto",
                )
            await self._insert_session(conn, fork)
            entries = (
                await conn.execute(
                    select(session_journal).where(
                        session_journal.c.session_id == session_id,
                        session_journal.c.seq < upto,
                    )
                )
            ).all()
            if entries:
                await conn.execute(
                    insert(session_journal),
                    [{**entry._mapping, "session_id": fork.id} for entry in entries],
                )
        return await self.get_session(project, fork.id)
