"""Sessions API: start, get (with its journal), list, send an event, cancel, fork."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from slackwater.api.deps import Project, services
from slackwater.api.inference import JsonBody
from slackwater.api.schemas import list_json, text_field
from slackwater.domain.clock import to_unix
from slackwater.domain.errors import InvalidRequest
from slackwater.domain.sessions import Entry, Session
from slackwater.runtime.services import Services

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
Svc = Annotated[Services, Depends(services)]


def session_json(session: Session) -> dict[str, Any]:
    waiting = session.waiting
    end = session.finished_at or session.updated_at
    return {
        "id": session.id,
        "object": "session",
        "agent": session.agent,
        "status": session.status.value,
        "arguments": session.arguments,
        "steps": session.steps,
        "waiting": ({"until": to_unix(waiting.until), "event": waiting.event} if waiting else None),
        "result": session.result,
        "error": session.error,
        "active_seconds": round(session.active_seconds, 6),
        "wall_seconds": round((end - session.created_at).total_seconds(), 6),
        "created_at": to_unix(session.created_at),
        "finished_at": to_unix(session.finished_at),
        "forked_from": session.forked_from,
        "forked_at": session.forked_at,
    }


def entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "kind": entry.kind.value,
        "name": entry.name,
        "value": entry.value,
        "blob": entry.blob,  # where a large value is kept (then `value` is null)
        "created_at": to_unix(entry.created_at),
    }


@router.post("")
async def start_session(body: JsonBody, project: Project, svc: Svc) -> dict[str, Any]:
    """Start a session of an agent: `{"agent": name, "arguments": {...}}`."""
    arguments = body.get("arguments", {})
    session = await svc.sessions.start(project, text_field(body, "agent"), arguments)
    return session_json(session)


@router.get("")
async def list_sessions(
    project: Project,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> dict[str, Any]:
    page = await svc.store.list_sessions(project, limit=limit, after=after)
    return list_json(page, session_json)


@router.get("/{session_id}")
async def get_session(
    session_id: str, project: Project, svc: Svc, journal: bool = False
) -> dict[str, Any]:
    found = await svc.store.get_session(project, session_id)
    session = session_json(found)
    session["cost"] = (await svc.sessions.cost(found)).to_dict()
    if journal:
        session["journal"] = [entry_json(e) for e in await svc.store.journal(session_id)]
    return session


@router.post("/{session_id}/events")
async def send_event(session_id: str, body: JsonBody, project: Project, svc: Svc) -> dict[str, Any]:
    """An event for the session: `{"key": ..., "payload": ...}`."""
    await svc.sessions.send(project, session_id, text_field(body, "key"), body.get("payload"))
    return session_json(await svc.store.get_session(project, session_id))


@router.post("/{session_id}/cancel")
async def cancel_session(session_id: str, project: Project, svc: Svc) -> dict[str, Any]:
    return session_json(await svc.store.cancel_session(project, session_id, svc.clock()))


@router.post("/{session_id}/fork")
async def fork_session(
    session_id: str, body: JsonBody, project: Project, svc: Svc
) -> dict[str, Any]:
    """A new session from the first `upto` entries of this one's journal."""
    upto = body.get("upto")
    if not isinstance(upto, int) or isinstance(upto, bool):
        raise InvalidRequest("'upto' must be an integer (journal entries to keep)", param="upto")
    return session_json(await svc.sessions.fork(project, session_id, upto))
