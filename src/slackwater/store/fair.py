"""The queue's own numbers: the fair queue's counters (each project's next rank and the
queue's virtual time; the arithmetic is `policy.fairness`), and other named state."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from slackwater.store.database import upsert
from slackwater.store.schema import projects, scheduler_state

VIRTUAL_TIME = "virtual_time"


async def state(conn: AsyncConnection, name: str) -> int:
    """A named number of the queue's state (0 when never set)."""
    query = select(scheduler_state.c.value).where(scheduler_state.c.name == name)
    return int((await conn.execute(query)).scalar() or 0)


async def set_state(conn: AsyncConnection, name: str, value: int) -> None:
    statement = upsert(conn.dialect.name, scheduler_state).values(name=name, value=value)
    await conn.execute(
        statement.on_conflict_do_update(index_elements=["name"], set_={"value": value})
    )


async def virtual_time(conn: AsyncConnection) -> int:
    return await state(conn, VIRTUAL_TIME)


async def set_virtual_time(conn: AsyncConnection, value: int) -> None:
    await set_state(conn, VIRTUAL_TIME, value)


async def project_next(conn: AsyncConnection, project: str) -> int:
    query = select(projects.c.next_rank).where(projects.c.project == project)
    return int((await conn.execute(query)).scalar() or 0)


async def set_project_next(conn: AsyncConnection, project: str, value: int) -> None:
    statement = upsert(conn.dialect.name, projects).values(project=project, next_rank=value)
    await conn.execute(
        statement.on_conflict_do_update(index_elements=["project"], set_={"next_rank": value})
    )
