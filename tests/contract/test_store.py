"""One Store contract, driven through the `Store` port only: every backend in
`backends.py` (SQLite and PostgreSQL today) runs it unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

import orjson
import pytest

from slackwater.domain.batch import Batch, BatchStatus, LineError
from slackwater.domain.errors import Conflict, IdempotencyMismatch, InvalidRequest, NotFound
from slackwater.domain.files import FileObject
from slackwater.domain.ids import new_id
from slackwater.domain.keys import ApiKey, KeyScope
from slackwater.domain.predictions import Chunk, JobStatus, PredictionJob, TableFormat
from slackwater.domain.request import Charge, Outcome, RequestStatus, Result, Usage
from slackwater.domain.schedules import Schedule
from slackwater.domain.sessions import Entry, EntryKind, Session, SessionStatus, Waiting
from slackwater.domain.webhooks import WebhookEndpoint
from slackwater.ports import (
    AnsweredCall,
    Escalation,
    PoolSample,
    QueuedCall,
    Retry,
    Settlement,
    StagedRequest,
    Store,
    StoredResponse,
)
from tests.contract.backends import StoreBackend, sql_backend

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def backend(database_url: str) -> StoreBackend:
    return sql_backend(database_url.split(":", 1)[0], database_url)


@pytest.fixture
async def store(backend: StoreBackend) -> AsyncIterator[Store]:
    store = backend.open()
    await store.migrate()
    await store.migrate()  # migrating twice is harmless
    yield store
    await store.close()


async def record(
    store: Store,
    lease_id: str,
    results: list[Result] | None = None,
    *,
    retries: list[Retry] | None = None,
    escalations: list[Escalation] | None = None,
    outcomes: dict[tuple[str, str], tuple[int, int]] | None = None,
    now: datetime = NOW,
    cache_until: datetime | None = None,
) -> int:
    """One worker flush: everything it settles goes in one call (one transaction)."""
    settlement = Settlement(
        results=results or [],
        retries=retries or [],
        escalations=escalations or [],
        outcomes=outcomes or {},
        cache_until=cache_until,
    )
    return await store.record(lease_id, settlement, now)


def make_file(project: str = "p1") -> FileObject:
    return FileObject(new_id("file"), project, "in.jsonl", "batch", 10, 1, NOW)


def validating_batch(project: str = "p1", window: timedelta = timedelta(hours=1)) -> Batch:
    return Batch(
        id=new_id("batch"),
        project=project,
        endpoint="/v1/embeddings",
        input_file_id="file_x",
        completion_window="1h",
        status=BatchStatus.VALIDATING,
        created_at=NOW,
        expires_at=NOW + window,
        metadata={"k": "v"},
    )


async def make_batch(
    store: Store,
    n: int = 5,
    *,
    model: str = "m",
    window: timedelta = timedelta(hours=1),
    project: str = "p1",
    activate: bool = True,
) -> Batch:
    batch = validating_batch(project, window)
    await store.add_batch(batch)
    rows = [
        StagedRequest(i + 1, f"c{i + 1}", model, f'{{"model":"{model}","input":"x{i}"}}')
        for i in range(n)
    ]
    await store.stage_requests(batch, rows)
    if activate:
        return await store.activate(batch.id, NOW)
    return await store.get_batch(None, batch.id)


def ok(request_id: int) -> Result:
    return Result(request_id, Outcome(200, {"object": "list", "n": request_id}))


async def test_files_roundtrip_pagination_and_projects(store: Store) -> None:
    made = [make_file() for _ in range(3)]
    for file in made:
        await store.add_file(file)
    await store.add_file(make_file("p2"))
    assert await store.get_file("p1", made[0].id) == made[0]
    with pytest.raises(NotFound):
        await store.get_file("p2", made[0].id)
    first = await store.list_files("p1", purpose=None, limit=2, after=None)
    assert [f.id for f in first.items] == [made[2].id, made[1].id] and first.has_more
    rest = await store.list_files("p1", purpose="batch", limit=2, after=made[1].id)
    assert [f.id for f in rest.items] == [made[0].id] and not rest.has_more
    await store.delete_file("p1", made[0].id)
    with pytest.raises(NotFound):
        await store.delete_file("p1", made[0].id)


async def test_files_list_oldest_first_and_expire(store: Store) -> None:
    made = [make_file() for _ in range(3)]
    for file in made:
        await store.add_file(file)
    oldest = await store.list_files("p1", purpose=None, limit=2, after=None, order="asc")
    assert [f.id for f in oldest.items] == [made[0].id, made[1].id] and oldest.has_more
    rest = await store.list_files("p1", purpose=None, limit=2, after=made[1].id, order="asc")
    assert [f.id for f in rest.items] == [made[2].id] and not rest.has_more
    brief = FileObject(
        new_id("file"), "p2", "b.jsonl", "batch", 1, 1, NOW, NOW + timedelta(hours=1)
    )
    await store.add_file(brief)
    assert (await store.get_file("p2", brief.id)).expires_at == brief.expires_at
    assert await store.expired_files(NOW + timedelta(minutes=59), 10) == []
    assert await store.expired_files(NOW + timedelta(hours=1), 10) == [brief]


async def test_a_batch_knows_its_model_usage_and_output_expiry(store: Store) -> None:
    batch = Batch(**{**validating_batch().__dict__, "output_expires_seconds": 7200})
    await store.add_batch(batch)
    rows = [StagedRequest(i, f"c{i}", "m", '{"model":"m"}') for i in (1, 2)]
    await store.stage_requests(batch, rows)
    active = await store.activate(batch.id, NOW)
    assert active.model == "m" and active.output_expires_seconds == 7200
    lease = await store.lease("w", ["m"], 10, NOW, 30)
    assert lease is not None
    results = [Result(r.id, Outcome(200, {}, Usage(10, 3))) for r in lease.requests]
    await record(store, lease.id, results)
    done = await store.get_batch(None, batch.id)
    assert (done.prompt_tokens, done.completion_tokens) == (20, 6)
    mixed = await make_batch(store, 1, model="a")
    assert mixed.model == "a"


async def test_batches_by_api_their_statuses_and_deleting_an_ended_one(store: Store) -> None:
    message_batch = Batch(**{**validating_batch().__dict__, "api": "anthropic"})
    await store.add_batch(message_batch)
    await store.stage_requests(
        message_batch, [StagedRequest(i, f"c{i}", "m", "{}") for i in (1, 2, 3)]
    )
    await store.activate(message_batch.id, NOW)
    plain = await make_batch(store, 1)
    only = await store.list_batches("p1", limit=10, after=None, api="anthropic")
    assert [b.id for b in only.items] == [message_batch.id] and only.items[0].api == "anthropic"
    assert len((await store.list_batches("p1", limit=10, after=None)).items) == 2
    lease = await store.lease("w", ["m"], 1, NOW, 30, batches=[message_batch.id])
    assert lease is not None
    await record(store, lease.id, [ok(lease.requests[0].id)])
    assert await store.request_statuses(message_batch.id) == {"succeeded": 1, "pending": 2}
    with pytest.raises(Conflict, match="cancel it"):
        await store.delete_batch("p1", plain.id)
    await store.move_batch(plain.id, BatchStatus.CANCELLING, NOW)
    await store.move_batch(plain.id, BatchStatus.CANCELLED, NOW)
    with pytest.raises(NotFound):
        await store.delete_batch("p2", plain.id)  # another project's
    assert (await store.delete_batch("p1", plain.id)).id == plain.id
    with pytest.raises(NotFound):
        await store.get_batch(None, plain.id)
    assert await store.request_statuses(plain.id) == {}


async def test_an_input_file_cannot_be_deleted_while_its_batch_validates(store: Store) -> None:
    file = make_file()
    await store.add_file(file)
    batch = validating_batch()
    await store.add_batch(Batch(**{**batch.__dict__, "input_file_id": file.id}))
    with pytest.raises(Conflict, match=f"input of batch {batch.id}"):
        await store.delete_file("p1", file.id)
    assert await store.get_file("p1", file.id) == file  # nothing was deleted
    await store.activate(batch.id, NOW)
    await store.delete_file("p1", file.id)  # in progress: its rows are in the queue


async def test_batch_activation_counts_and_transitions(store: Store) -> None:
    batch = await make_batch(store, 7)
    assert batch.status is BatchStatus.IN_PROGRESS
    assert batch.request_counts.total == 7 and batch.in_progress_at == NOW
    assert batch.metadata == {"k": "v"}
    with pytest.raises(Conflict):
        await store.move_batch(batch.id, BatchStatus.COMPLETED, NOW)
    page = await store.list_batches("p1", limit=10, after=None)
    assert [b.id for b in page.items] == [batch.id]
    assert (await store.list_batches("p2", limit=10, after=None)).items == []
    assert await store.batch_ids_in(BatchStatus.IN_PROGRESS) == [batch.id]


async def test_reads_do_not_wait_for_a_writer(store: Store, backend: StoreBackend) -> None:
    batch = await make_batch(store, 3)
    file = make_file()
    await store.add_file(file)
    # A writer mid-transaction, as an intake staging a large file is: status pages, the
    # monitor's glances, the planner, reports and metrics still answer at once (on
    # SQLite, from the last commit). Each read is listed: one that took the write lock
    # would time out here.
    async with backend.writer_busy(store):
        reads = [
            store.get_batch(None, batch.id),
            store.get_file("p1", file.id),
            store.list_files("p1", purpose=None, limit=10, after=None),
            store.list_batches("p1", limit=10, after=None),
            store.count_open(batch.id),
            store.batch_ids_in(BatchStatus.IN_PROGRESS),
            store.open_requests("p1"),
            store.open_work(),
            store.live_workers("spot", NOW),
            store.ledger("batch"),
            store.ledger_entries(batch.id, 10),
            store.batch_outcomes(),
            store.queue_depth(),
            store.outcomes(),
            store.open_jobs(),
            store.recent_routes("p1", 10),
            store.batch_requests(batch.id, after_line=1, limit=5),
        ]
        answers = await asyncio.wait_for(asyncio.gather(*reads), timeout=5)
        finished = await asyncio.wait_for(_collect(store.finished(batch.id)), timeout=5)
    seen, _, files, listed, open_count, ids, queued, work, *_ = answers
    assert seen.request_counts.total == 3 and open_count == 3 and queued == 3
    assert [f.id for f in files.items] == [file.id] and [b.id for b in listed.items] == [batch.id]
    assert ids == [batch.id] and [w.requests for w in work] == [3]
    assert [r.line for r in finished] == [1, 2, 3]
    routes, lines = answers[-2:]
    assert routes == []  # its lines were not routed
    assert [(r.line, r.status, r.error) for r in lines] == [
        (2, "pending", None),
        (3, "pending", None),
    ]


async def _collect(rows: AsyncIterator[Any]) -> list[Any]:
    return [row async for row in rows]


async def test_polls_with_nothing_to_do_do_not_wait_for_a_writer(
    store: Store, backend: StoreBackend
) -> None:
    await make_batch(store, 3)
    # Idle workers, the monitor's tick and every API call's key check ask the store
    # often; while there is nothing for them to change they must not queue behind (and
    # so stall) a writer such as an intake.
    async with backend.writer_busy(store):
        calls = [
            store.lease("w", ["other"], 10, NOW, 30),
            store.reap_leases(NOW + timedelta(hours=1)),
            store.promote_retries(NOW + timedelta(hours=1)),
            store.cached(["no-such-key"], NOW),
            store.has_keys(),
            store.key_for("no-such-hash", NOW),
            store.stored_bytes("default"),
            store.due_deliveries(NOW, 10),
        ]
        answers = await asyncio.wait_for(asyncio.gather(*calls), timeout=5)
    assert answers == [None, 0, 0, {}, False, None, 0, []]


async def test_failed_validation_keeps_line_errors(store: Store) -> None:
    batch = await make_batch(store, 2, activate=False)
    await store.drop_staged(batch.id)
    errors = [LineError("invalid_json_line", "bad", line=3, param=None)]
    failed = await store.move_batch(batch.id, BatchStatus.FAILED, NOW, errors=errors)
    assert failed.status is BatchStatus.FAILED and failed.errors == errors
    assert failed.failed_at == NOW


async def test_lease_is_earliest_deadline_first_and_per_model(store: Store) -> None:
    late = await make_batch(store, 3, window=timedelta(hours=5))
    soon = await make_batch(store, 3, window=timedelta(minutes=5))
    other = await make_batch(store, 3, model="other", window=timedelta(minutes=1))
    lease = await store.lease("w", ["m"], 4, NOW, 30)
    assert lease is not None and lease.model == "m"
    assert [r.batch_id for r in lease.requests] == [soon.id] * 3 + [late.id]
    assert all(r.attempts == 1 for r in lease.requests)
    assert lease.requests[0].body == {"model": "m", "input": "x0"}
    only_other = await store.lease("w", ["other"], 10, NOW, 30)
    assert only_other is not None and {r.batch_id for r in only_other.requests} == {other.id}
    assert await store.lease("w", ["nobody"], 10, NOW, 30) is None


async def test_concurrent_leases_never_share_a_request(store: Store, backend: StoreBackend) -> None:
    await make_batch(store, 200)
    second = backend.open()  # another process's connection pool
    try:
        leases = await asyncio.gather(
            *(s.lease(f"w{i}", ["m"], 15, NOW, 30) for i, s in enumerate([store, second] * 8))
        )
    finally:
        await second.close()
    ids = [r.id for lease in leases if lease for r in lease.requests]
    assert len(ids) == len(set(ids)) == 200


async def test_record_is_idempotent_and_moves_counts(store: Store) -> None:
    batch = await make_batch(store, 3)
    lease = await store.lease("w", ["m"], 10, NOW, 30)
    assert lease is not None
    first, second, third = lease.requests
    failure = Result(second.id, Outcome.error(400, "bad"))
    assert await record(store, lease.id, [ok(first.id), failure]) == 2
    assert await record(store, lease.id, [ok(first.id), failure]) == 0
    counts = (await store.get_batch(None, batch.id)).request_counts
    assert (counts.total, counts.completed, counts.failed) == (3, 1, 1)
    assert await store.count_open(batch.id) == 1
    assert await store.release(lease.id) == 1
    again = await store.lease("w", ["m"], 10, NOW, 30)
    assert again is not None and [r.id for r in again.requests] == [third.id]
    assert again.requests[0].attempts == 1  # a release is not a failed attempt


async def test_expired_lease_is_reaped_and_late_results_are_dropped(store: Store) -> None:
    await make_batch(store, 2)
    dead = await store.lease("dead", ["m"], 10, NOW, 30)
    assert dead is not None
    assert await store.reap_leases(NOW + timedelta(seconds=10)) == 0
    assert await store.heartbeat(dead.id, NOW + timedelta(seconds=20), 30) == 2
    assert await store.reap_leases(NOW + timedelta(seconds=40)) == 0
    assert await store.reap_leases(NOW + timedelta(seconds=51)) == 2
    assert await store.heartbeat(dead.id, NOW, 30) == 0
    alive = await store.lease("alive", ["m"], 10, NOW + timedelta(seconds=52), 30)
    assert alive is not None and alive.requests[0].attempts == 2
    # The dead worker wakes up: its results must not be written.
    assert await record(store, dead.id, [ok(r.id) for r in dead.requests]) == 0
    assert await record(store, alive.id, [ok(r.id) for r in alive.requests]) == 2


async def test_cancel_stops_pending_but_keeps_running_results(store: Store) -> None:
    batch = await make_batch(store, 4)
    lease = await store.lease("w", ["m"], 1, NOW, 30)
    assert lease is not None
    cancelling = await store.move_batch(batch.id, BatchStatus.CANCELLING, NOW)
    assert cancelling.cancelling_at == NOW
    assert await store.lease("w", ["m"], 10, NOW, 30) is None
    assert await store.count_open(batch.id) == 1
    assert await record(store, lease.id, [ok(lease.requests[0].id)]) == 1
    statuses = [r.status async for r in store.finished(batch.id)]
    assert statuses == [RequestStatus.SUCCEEDED] + [RequestStatus.CANCELLED] * 3


async def test_expiry_closes_unstarted_requests(store: Store) -> None:
    batch = await make_batch(store, 3)
    assert await store.close_unstarted(batch.id, RequestStatus.EXPIRED) == 3
    assert await store.count_open(batch.id) == 0


async def test_request_ids_are_stable_and_tell_nothing_of_the_queue(store: Store) -> None:
    first = await make_batch(store, 3)
    second = await make_batch(store, 3, project="p2")
    ids = [r.request_id async for r in store.finished(first.id)]
    assert ids == [r.request_id async for r in store.finished(first.id)]  # re-finalizing
    others = [r.request_id async for r in store.finished(second.id)]
    assert len(set(ids + others)) == 6
    assert all(len(i) == 28 and i.startswith("req_") for i in ids + others)
    # Not row numbers: an id does not give away its neighbours'.
    numbers = [int(i.removeprefix("req_"), 16) for i in ids + others]
    assert all(abs(b - a) > 1_000_000 for a, b in pairwise(numbers))


async def test_finished_streams_in_input_order_in_chunks(store: Store) -> None:
    batch = await make_batch(store, 25)
    lease = await store.lease("w", ["m"], 100, NOW, 30)
    assert lease is not None
    await record(store, lease.id, [ok(r.id) for r in reversed(lease.requests)])
    rows = [r async for r in store.finished(batch.id, chunk=7)]
    assert [r.line for r in rows] == list(range(1, 26))
    assert [r.custom_id for r in rows][:3] == ["c1", "c2", "c3"]
    assert all(r.status is RequestStatus.SUCCEEDED and r.status_code == 200 for r in rows)
    assert rows[0].response is not None and rows[0].response.startswith(b"{")


async def test_api_keys(store: Store) -> None:
    assert not await store.has_keys()
    key = ApiKey("key_1", "team-a", NOW, name="ci", expires_at=NOW + timedelta(days=1))
    await store.add_key(key, "sha256:abc")
    await store.add_key(ApiKey("key_2", "team-b", NOW, scope=KeyScope.READ), "sha256:def")
    assert await store.has_keys()
    assert await store.key_for("sha256:abc", NOW) == key
    assert await store.key_for("sha256:zzz", NOW) is None
    assert await store.key_for("sha256:abc", NOW + timedelta(days=1)) is None  # expired
    assert [k.id for k in await store.list_keys()] == ["key_1", "key_2"]
    [only] = await store.list_keys("team-b")
    assert only.scope is KeyScope.READ and only.name is None
    revoked = await store.revoke_key("key_2", NOW)
    assert revoked.revoked_at == NOW and await store.key_for("sha256:def", NOW) is None
    assert (await store.revoke_key("key_2", NOW + timedelta(hours=1))).revoked_at == NOW
    with pytest.raises(NotFound):
        await store.revoke_key("key_nope", NOW)


async def test_timestamps_come_back_aware_utc(store: Store) -> None:
    batch = await make_batch(store, 1)
    assert batch.created_at == NOW and batch.created_at.tzinfo is not None
    assert batch.expires_at == NOW + timedelta(hours=1)


async def test_projects_interleave_in_lease_order(store: Store) -> None:
    big = await make_batch(store, 30, project="big")
    small = await make_batch(store, 3, project="small")
    lease = await store.lease("w", ["m"], 6, NOW, 30)
    assert lease is not None
    owners = [r.batch_id for r in lease.requests]
    # The small project's work is not stuck behind the big project's 30 requests.
    assert owners.count(small.id) == 3 and owners.count(big.id) == 3


async def test_prefix_packing_leases_shared_prompts_together_within_a_deadline_step(
    store: Store,
) -> None:
    async def batch_of(prefixes: list[str | None], window: timedelta) -> Batch:
        batch = validating_batch(window=window)
        await store.add_batch(batch)
        rows = [
            StagedRequest(i + 1, f"c{i + 1}", "m", f'{{"input":"{i}"}}', prefix=prefix)
            for i, prefix in enumerate(prefixes)
        ]
        await store.stage_requests(batch, rows)
        return await store.activate(batch.id, NOW)

    docs = ["a", "b", "c", None, "a", "b", "c", None, "a", "b", "c", "a"]
    await batch_of(docs, timedelta(hours=5))
    # Due sooner (an earlier deadline step) and sharing "b": the later "b"s do not join it.
    sooner = await batch_of(["b", "b", None], timedelta(hours=1))

    async def lease(limit: int, pack: bool = True) -> list[str | None]:
        got = await store.lease("w", ["m"], limit, NOW, 30, pack_prefixes=pack)
        assert got is not None
        return [
            f"soon-{['b', 'b', None][int(r.body['input'])]}"
            if r.batch_id == sooner.id
            else docs[int(r.body["input"])]
            for r in got.requests
        ]

    # In queue order each request with a shared prefix brings those of its step along.
    assert await lease(5) == ["soon-b", "soon-b", "soon-None", "a", "a"]
    assert await lease(6) == ["b", "b", "b", "c", "c", "c"]
    assert await lease(10) == [None, None, "a", "a"]
    # Off, the queue's order as it is.
    again = await batch_of(["x", "y", "x"], timedelta(hours=5))
    plain = await store.lease("w", ["m"], 2, NOW, 30)
    assert plain is not None and [r.batch_id for r in plain.requests] == [again.id] * 2
    assert [r.body["input"] for r in plain.requests] == ["0", "1"]


async def test_retry_waits_until_not_before(store: Store) -> None:
    from slackwater.ports import Retry

    batch = await make_batch(store, 2)
    lease = await store.lease("w", ["m"], 10, NOW, 30)
    assert lease is not None
    later = NOW + timedelta(seconds=30)
    assert await record(store, lease.id, retries=[Retry(r.id, later) for r in lease.requests]) == 2
    assert await store.count_open(batch.id) == 2
    assert await store.lease("w", ["m"], 10, NOW, 30) is None
    assert await store.promote_retries(NOW + timedelta(seconds=29)) == 0
    assert await store.promote_retries(later) == 2
    again = await store.lease("w", ["m"], 10, later, 30)
    assert again is not None and [r.attempts for r in again.requests] == [2, 2]


async def test_result_cache_expires(store: Store) -> None:
    batch = validating_batch()
    await store.add_batch(batch)
    await store.stage_requests(batch, [StagedRequest(1, "a", "m", "{}", cache_key="k1")])
    await store.activate(batch.id, NOW)
    lease = await store.lease("w", ["m"], 10, NOW, 30)
    assert lease is not None and lease.requests[0].cache_key == "k1"
    until = NOW + timedelta(minutes=5)
    await record(store, lease.id, [ok(lease.requests[0].id)], cache_until=until)
    hit = (await store.cached(["k1", "k2"], NOW))["k1"]
    assert hit.status_code == 200 and b'"object":"list"' in hit.body
    assert await store.cached(["k1"], until) == {}


async def test_idempotency_key_returns_the_first_batch(store: Store) -> None:
    first = await store.add_batch(validating_batch(), "key-1")
    assert (await store.add_batch(validating_batch(), "key-1")).id == first.id
    assert (await store.add_batch(validating_batch(), "key-2")).id != first.id
    assert (await store.add_batch(validating_batch())).id != first.id
    other = Batch(**{**validating_batch().__dict__, "completion_window": "2h"})
    with pytest.raises(IdempotencyMismatch, match=f"create batch {first.id}"):
        await store.add_batch(other, "key-1")


async def test_quota_counts(store: Store) -> None:
    await make_batch(store, 5, project="q")
    await store.add_file(FileObject(new_id("file"), "q", "a.jsonl", "batch", 123, 1, NOW))
    assert await store.open_requests("q") == 5
    assert await store.stored_bytes("q") == 123
    assert await store.open_requests("other") == 0


async def test_webhook_outbox_is_written_with_the_final_status(backend: StoreBackend) -> None:
    store = backend.open(webhooks=True)
    await store.migrate()
    try:
        batch = await make_batch(store, 1)
        await store.move_batch(batch.id, BatchStatus.CANCELLING, NOW)
        assert await store.due_deliveries(NOW, 10) == []
        await store.move_batch(batch.id, BatchStatus.CANCELLED, NOW)
        [delivery] = await store.due_deliveries(NOW, 10)
        assert (delivery.event, delivery.batch_id, delivery.attempts) == (
            "batch.cancelled",
            batch.id,
            0,
        )
        await store.delivery_failed(delivery.id, "503", NOW + timedelta(seconds=10))
        assert await store.due_deliveries(NOW, 10) == []
        [again] = await store.due_deliveries(NOW + timedelta(seconds=10), 10)
        assert again.attempts == 1
        await store.delivered(again.id, NOW)
        assert await store.due_deliveries(NOW + timedelta(days=1), 10) == []
    finally:
        await store.close()


async def test_model_outcomes_accumulate(store: Store) -> None:
    assert await store.outcomes() == {}
    batch = await make_batch(store, 2)
    lease = await store.lease("w", ["m"], 10, NOW, 30)
    assert lease is not None
    await record(store, lease.id, outcomes={("m", ""): (3, 1), ("m", "code"): (0, 2)})
    await record(store, "lease_gone", outcomes={("m", ""): (1, 1)})  # not tied to a lease
    assert await store.count_open(batch.id) == 2
    assert await store.outcomes() == {("m", ""): (4, 2), ("m", "code"): (0, 2)}


async def test_one_process_at_a_time_claims_intake(store: Store) -> None:
    batch = await make_batch(store, 1, activate=False)
    assert await store.claim_intake(batch.id, "a", NOW, 60)
    assert not await store.claim_intake(batch.id, "b", NOW + timedelta(seconds=59), 60)
    assert await store.claim_intake(batch.id, "a", NOW + timedelta(seconds=59), 60)  # renew
    assert await store.claim_intake(batch.id, "b", NOW + timedelta(seconds=120), 60)  # expired
    await store.activate(batch.id, NOW)
    assert not await store.claim_intake(batch.id, "b", NOW, 60)  # not validating any more


async def test_ledger_sums_charges_exactly_by_every_grouping(store: Store) -> None:
    first = await make_batch(store, 2, model="m")
    second = await make_batch(store, 1, model="n", project="p2")
    for model in ("m", "n"):
        lease = await store.lease("w", [model], 10, NOW, 30)
        assert lease is not None
        results = [
            Result(
                r.id,
                Outcome(200, {"n": r.id}, Usage(10, 5)),
                Charge(
                    "spot" if model == "m" else "openai",
                    1.25,
                    Decimal("0.000000001"),
                    Decimal("0.1"),
                    engine="fake" if model == "m" else "openai_batch",
                    price="$0.9/hour",
                ),
            )
            for r in lease.requests
        ]
        await record(store, lease.id, results, now=NOW + timedelta(hours=1))
    by_pool = {r.key: r for r in await store.ledger("pool")}
    assert set(by_pool) == {"spot", "openai"}
    spot = by_pool["spot"]
    assert (spot.requests, spot.prompt_tokens, spot.completion_tokens) == (2, 20, 10)
    assert spot.compute_seconds == 2.5
    assert spot.cost == Decimal("0.000000002") and spot.realtime_cost == Decimal("0.2")
    assert spot.saving == Decimal("0.199999998")
    assert [r.key for r in await store.ledger("batch")] == sorted([first.id, second.id])
    assert {r.key for r in await store.ledger("project")} == {"p1", "p2"}
    assert {r.key for r in await store.ledger("model")} == {"m", "n"}
    assert {r.key for r in await store.ledger("engine")} == {"fake", "openai_batch"}
    [day] = await store.ledger("day")
    assert (day.key, day.requests) == ("2026-01-01", 3)
    assert [r.requests for r in await store.ledger("pool", project="p2")] == [1]
    assert await store.ledger("pool", since=NOW + timedelta(days=1)) == []
    batch = await store.get_batch(None, first.id)
    assert (batch.cost, batch.realtime_cost) == (Decimal("0.000000002"), Decimal("0.2"))
    assert await store.batch_outcomes() == {"in_progress": 2}
    with pytest.raises(ValueError, match="cannot group"):
        await store.ledger("colour")


async def test_the_ledgers_rollup_changes_no_report_and_keeps_deleted_spend(
    store: Store,
) -> None:
    def charge(cost: str) -> Charge:
        return Charge("spot", 1.0, Decimal(cost), Decimal("1"), engine="fake", price="$1/h")

    async def settle(model: str, when: datetime, costs: list[str], retry: str = "") -> None:
        lease = await store.lease("w", [model], 10, when, 30)
        assert lease is not None
        done = lease.requests[: len(costs)]
        results = [
            Result(r.id, Outcome(200, {}, Usage(2, 3)), charge(c))
            for r, c in zip(done, costs, strict=True)
        ]
        retries = [
            Retry(r.id, when + timedelta(days=30), Decimal(retry))
            for r in lease.requests[len(costs) :]
        ]
        await record(store, lease.id, results, retries=retries, now=when)

    async def reports() -> list[Any]:
        groups = ("day", "model", "tier", "pool", "engine", "project")
        daily = [await store.ledger(by, daily=True) for by in ("model", "pool")]
        return [
            await store.ledger(by, project) for by in groups for project in (None, "p1", "p2")
        ] + daily

    old = await make_batch(store, 3, model="m")
    await settle("m", NOW, ["0.001", "0.002", "0.003"])
    await make_batch(store, 3, model="n", project="p2")
    # Two finished a day later, one charged for a failed attempt and waiting to retry.
    await settle("n", NOW + timedelta(days=1), ["0.01", "0.02"], retry="0.5")
    before = await reports()
    # The rollup passes the first day only: the reports are the same.
    assert await store.roll_up_ledger(NOW + timedelta(hours=12)) == 3
    assert await reports() == before
    assert await store.roll_up_ledger(NOW + timedelta(hours=12)) == 0  # nothing added twice
    # Past the second day too; the waiting request, not finished, stays out of it.
    assert await store.roll_up_ledger(NOW + timedelta(days=5)) == 2
    assert await reports() == before
    [day_one, day_two, unfinished] = await store.ledger("day")
    assert (day_one.key, day_one.requests, day_one.cost) == ("2026-01-01", 3, Decimal("0.006"))
    assert (day_two.key, day_two.requests) == ("2026-01-02", 2)
    assert (unfinished.key, unfinished.cost) == ("None", Decimal("0.5"))
    by_model = [(r.day, r.key, r.requests) for r in await store.ledger("model", daily=True)]
    assert by_model == [("2026-01-01", "m", 3), ("2026-01-02", "n", 2), ("None", "n", 1)]
    # A deleted batch's spend stays in the totals, rolled up or not.
    later = await make_batch(store, 1, model="m")
    await settle("m", NOW + timedelta(days=6), ["0.1"])
    totals = await store.ledger("project")
    for ended in (old, later):
        await store.move_batch(ended.id, BatchStatus.CANCELLING, NOW)
        await store.move_batch(ended.id, BatchStatus.CANCELLED, NOW)
        await store.delete_batch("p1", ended.id)
    assert await store.ledger("project") == totals
    assert {r.key for r in await store.ledger("batch")} == {
        b.id for b in (await store.list_batches("p2", limit=10, after=None)).items
    }
    assert await store.roll_up_ledger(NOW + timedelta(days=30)) == 0  # deleted: folded once
    assert await store.ledger("project") == totals


async def test_pool_samples_are_kept_once_listed_by_pool_and_forgotten(store: Store) -> None:
    samples = [
        PoolSample(pool, NOW + timedelta(minutes=m), m != 1, Decimal("0.912345"))
        for m in range(3)
        for pool in ("spot", "od")
    ]
    await store.add_pool_samples(samples)
    await store.add_pool_samples(samples[:2])  # the same instant again: kept once
    listed = await store.pool_samples(NOW + timedelta(minutes=1))
    assert [(s.pool, s.at - NOW, s.available) for s in listed] == [
        ("od", timedelta(minutes=1), False),
        ("od", timedelta(minutes=2), True),
        ("spot", timedelta(minutes=1), False),
        ("spot", timedelta(minutes=2), True),
    ]
    assert {s.price_per_hour for s in listed} == {Decimal("0.912345")}
    assert await store.forget_pool_samples(NOW + timedelta(minutes=2)) == 4
    assert len(await store.pool_samples(NOW)) == 2


async def test_reroute_moves_only_the_waiting_requests(store: Store) -> None:
    batch = await make_batch(store, 5)
    lease = await store.lease("w", ["m"], 2, NOW, 30)
    assert lease is not None
    assert await store.reroute(batch.id, "m", "venue") == 3
    assert await store.reroute(batch.id, "m", "venue") == 0
    assert await store.lease("w", ["m"], 10, NOW, 30) is None
    moved = await store.lease("w", ["venue"], 10, NOW, 30)
    assert moved is not None and len(moved.requests) == 3
    assert {r.model for r in moved.requests} == {"venue"}
    # The leased two finish on the model they were leased for.
    assert await record(store, lease.id, [ok(r.id) for r in lease.requests]) == 2


async def test_open_work_and_live_workers(store: Store) -> None:
    batch = await make_batch(store, 3)
    await make_batch(store, 2, activate=False)  # staged: not open work yet
    [work] = await store.open_work()
    assert (work.batch_id, work.model, work.requests) == (batch.id, "m", 3)
    assert work.deadline == batch.expires_at
    lease = await store.lease("w", ["m"], 1, NOW, 30, batches=[batch.id])
    assert lease is not None
    assert await store.lease("w", ["m"], 1, NOW, 30, batches=[]) is None
    assert await store.lease("w", ["m"], 1, NOW, 30, batches=["batch_other"]) is None

    await store.worker_seen("a", "spot", "spot", NOW)
    await store.worker_seen("a", "spot", "spot", NOW + timedelta(seconds=10))
    await store.worker_seen("b", "od", "on_demand", NOW)
    await store.worker_seen("c", "spot-b", "spot", NOW)
    assert await store.live_workers("spot", NOW + timedelta(seconds=5)) == 1
    assert await store.live_workers("spot", NOW + timedelta(seconds=11)) == 0
    await store.worker_gone("a")
    assert await store.live_workers("spot", NOW) == 0
    assert await store.live_workers("od", NOW) == 1
    assert await store.live_workers("spot-b", NOW) == 1  # counted by pool, not kind


async def test_where_each_batch_ran_its_latest_request(store: Store) -> None:
    one, two = await make_batch(store, 3), await make_batch(store, 1)

    async def run(batch_id: str, pool: str, at: datetime) -> None:
        lease = await store.lease(pool, ["m"], 1, at, 30, batches=[batch_id])
        assert lease is not None
        charge = Charge(pool, 1.0, Decimal("0.001"), Decimal("0.01"))
        result = Result(lease.requests[0].id, Outcome(200, {}), charge)
        assert await record(store, lease.id, [result], now=at) == 1

    assert await store.running_in(NOW) == {}
    await run(one.id, "spot", NOW)
    await run(one.id, "od", NOW + timedelta(seconds=5))
    await run(two.id, "spot", NOW + timedelta(seconds=1))
    assert await store.running_in(NOW) == {one.id: "od", two.id: "spot"}
    assert await store.running_in(NOW + timedelta(seconds=2)) == {one.id: "od"}
    await run(one.id, "spot", NOW + timedelta(seconds=9))
    assert await store.running_in(NOW) == {one.id: "spot", two.id: "spot"}


async def test_failed_attempts_are_charged_when_they_fail(store: Store) -> None:
    batch = await make_batch(store, 2)
    lease = await store.lease("w", ["m"], 10, NOW, 30)
    assert lease is not None
    first, second = lease.requests
    later = NOW + timedelta(seconds=1)
    retry = Retry(first.id, later, Decimal("0.25"))
    escalation = Escalation(second.id, "m", b'{"model":"m"}', b"{}", Decimal("0.5"))
    # A retry and an escalation in one flush: the retry counts as settled, the
    # escalation goes back to the queue on another model.
    assert await record(store, lease.id, retries=[retry], escalations=[escalation]) == 1
    assert (await store.get_batch(None, batch.id)).cost == Decimal("0.75")
    await store.promote_retries(later)
    again = await store.lease("w", ["m"], 10, later, 30)
    assert again is not None and len(again.requests) == 2
    charge = Charge("spot", 1.0, Decimal("0.125"), Decimal("1"))
    results = [Result(r.id, Outcome(200, {}), charge) for r in again.requests]
    await record(store, again.id, results, now=later)
    by_batch = {r.key: r for r in await store.ledger("batch")}
    assert by_batch[batch.id].cost == Decimal("1.0")  # 0.25 + 0.5 + 2 x 0.125
    assert (await store.get_batch(None, batch.id)).cost == Decimal("1.0")


def call(
    call_id: str, *, project: str = "p1", tier: str = "flex", seconds: float = 60
) -> QueuedCall:
    return QueuedCall(
        id=call_id,
        project=project,
        model="m",
        endpoint="/v1/responses",
        body='{"model": "m", "input": "hi"}',
        deadline=NOW + timedelta(seconds=seconds),
        tier=tier,
    )


async def test_a_queued_call_runs_from_the_queue_by_its_deadline(store: Store) -> None:
    batch = await make_batch(store, 2)  # due in an hour
    await store.enqueue_call(call("resp_a", seconds=30), NOW)
    await store.enqueue_call(call("call_b", tier="standard"), NOW)
    assert await store.waiting_calls("flex") == 1
    assert await store.waiting_calls("standard") == 1
    assert set(await store.call_states(["resp_a", "call_b", "resp_gone"])) == {"resp_a", "call_b"}
    lease = await store.lease("w", ["m"], 3, NOW, 30)
    assert lease is not None
    # The calls are due in a minute, the batch in an hour: the calls go first.
    assert [r.batch_id for r in lease.requests][:2] == ["resp_a", "call_b"]
    assert lease.requests[2].batch_id == batch.id
    assert await store.waiting_calls("flex") == 0  # taken by a worker
    first = lease.requests[0]
    answer = Outcome(200, {"object": "response"}, Usage(3, 4))
    await record(
        store,
        lease.id,
        [Result(first.id, answer, Charge("local", 0.5, Decimal("0.001"), Decimal("0.01")))],
    )
    states = await store.call_states(["resp_a", "call_b"])
    assert states["resp_a"].status is RequestStatus.SUCCEEDED
    assert states["resp_a"].status_code == 200
    assert states["resp_a"].response == b'{"object":"response"}'
    assert states["call_b"].status is RequestStatus.LEASED and states["call_b"].response is None
    by_tier = {r.key: r for r in await store.ledger("tier")}
    assert by_tier["flex"].cost == Decimal("0.001") and by_tier["flex"].requests == 1
    # Cancelled while leased: its worker's settlement then writes nothing.
    assert await store.cancel_call("call_b", NOW)
    assert not await store.cancel_call("call_b", NOW)
    assert not await store.cancel_call("resp_a", NOW)  # it had finished
    second = lease.requests[1]
    assert await record(store, lease.id, [Result(second.id, answer)]) == 0
    assert (await store.call_states(["call_b"]))["call_b"].status is RequestStatus.CANCELLED


async def test_stored_responses_end_once(store: Store) -> None:
    queued = StoredResponse(
        "resp_q", "p1", "queued", "flex", {"model": "m", "input": "hi"}, NOW, queued=True
    )
    await store.enqueue_call(call("resp_q"), NOW, queued)
    done = StoredResponse(
        "resp_d", "p1", "completed", "default", {"model": "m", "input": "hi"}, NOW,
        answer={"id": "resp_d", "status": "completed"}, completed_at=NOW,
    )  # fmt: skip
    await store.add_response(done)
    assert await store.get_response("p1", "resp_d") == done
    assert await store.get_response(None, "resp_q") == queued
    with pytest.raises(NotFound):
        await store.get_response("p2", "resp_q")  # another project's
    assert [r.id for r in await store.open_responses(10)] == ["resp_q"]
    final = {"id": "resp_q", "status": "completed"}
    later = NOW + timedelta(seconds=5)
    assert await store.end_response("resp_q", "completed", final, later)
    assert not await store.end_response("resp_q", "failed", {"status": "failed"}, later)
    ended = await store.get_response("p1", "resp_q")
    assert (ended.status, ended.answer, ended.completed_at) == ("completed", final, later)
    assert await store.open_responses(10) == []
    with pytest.raises(NotFound):
        await store.delete_response("p2", "resp_q")
    await store.delete_response("p1", "resp_q")
    assert await store.call_states(["resp_q"]) == {}  # its request went with it
    with pytest.raises(NotFound):
        await store.get_response("p1", "resp_q")


def endpoint(endpoint_id: str, project: str, *events: str) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=endpoint_id,
        project=project,
        name=endpoint_id,
        url=f"https://hooks.example/{endpoint_id}",
        event_types=events,
        secret=f"whsec_{endpoint_id}",
        created_at=NOW,
        updated_at=NOW,
    )


async def test_webhook_endpoints_and_their_events(backend: StoreBackend) -> None:
    store = backend.open(webhooks=True)
    await store.migrate()
    try:
        await store.add_endpoint(endpoint("whep_1", "p1", "batch.completed", "response.completed"))
        await store.add_endpoint(endpoint("whep_2", "p1", "batch.failed"))
        await store.add_endpoint(endpoint("whep_3", "p2", "batch.completed"))
        assert (await store.get_endpoint("p1", "whep_1")).event_types == (
            "batch.completed",
            "response.completed",
        )
        with pytest.raises(NotFound):
            await store.get_endpoint("p2", "whep_1")
        page = await store.list_endpoints("p1", limit=1, after=None)
        assert [e.id for e in page.items] == ["whep_2"] and page.has_more
        # A batch of p1 completes: its endpoint that asked, and the configured url.
        batch = await make_batch(store, 1)
        await store.move_batch(batch.id, BatchStatus.FINALIZING, NOW, outcome=BatchStatus.COMPLETED)
        await store.move_batch(batch.id, BatchStatus.COMPLETED, NOW)
        deliveries = await store.due_deliveries(NOW, 10)
        assert sorted((d.endpoint_id or "") for d in deliveries) == ["", "whep_1"]
        assert len({d.event_id for d in deliveries}) == 1  # one event, two receivers
        [to_endpoint] = [d for d in deliveries if d.endpoint_id]
        assert to_endpoint.endpoint is not None and to_endpoint.endpoint.url.endswith("whep_1")
        event = orjson.loads(to_endpoint.payload)
        assert event["data"] == {"id": batch.id} and event["id"] == to_endpoint.event_id
        # A response of p1 ends: response.completed, once.
        row = StoredResponse("resp_w", "p1", "queued", "flex", {"model": "m"}, NOW, queued=True)
        await store.enqueue_call(call("resp_w"), NOW, row)
        done = {"status": "completed", "background": True}
        assert await store.end_response("resp_w", "completed", done, NOW)
        assert not await store.end_response("resp_w", "completed", done, NOW)
        # A response someone waited for in the call has no event.
        await store.enqueue_call(call("resp_v"), NOW, replace(row, id="resp_v"))
        assert await store.end_response("resp_v", "completed", {"status": "completed"}, NOW)
        events = [d.event for d in await store.due_deliveries(NOW, 10)]
        assert events.count("response.completed") == 2  # whep_1 and the configured url
        # Changing and rotating.
        later = NOW + timedelta(minutes=1)
        moved = await store.change_endpoint("p1", "whep_1", later, url="https://hooks.example/new")
        assert moved.url.endswith("/new") and moved.updated_at == later
        same = await store.change_endpoint("p1", "whep_1", later + timedelta(1), name="whep_1")
        assert same.updated_at == later  # nothing changed
        kept = await store.change_endpoint(
            "p1", "whep_1", later, secret="whsec_new", previous_until=later + timedelta(days=1)
        )
        assert kept.secrets(later) == ["whsec_new", "whsec_whep_1"]
        assert kept.secrets(later + timedelta(days=2)) == ["whsec_new"]
        dropped = await store.change_endpoint("p1", "whep_1", later, secret="whsec_newer")
        assert dropped.secrets(later) == ["whsec_newer"]
        # Deleted: its pending deliveries lose their endpoint (the sender drops them).
        await store.delete_endpoint("p1", "whep_1")
        with pytest.raises(NotFound):
            await store.delete_endpoint("p1", "whep_1")
        orphans = [d for d in await store.due_deliveries(NOW, 10) if d.endpoint_id == "whep_1"]
        assert orphans and all(d.endpoint is None for d in orphans)
    finally:
        await store.close()


async def test_calls_answered_in_real_time_join_the_ledger(store: Store) -> None:
    charge = Charge("local", 0.25, Decimal("0.002"), Decimal("0.01"), engine="fake", price="p")
    answered = [
        AnsweredCall(f"call_{i}", "p1", "m", "/v1/chat/completions", tier, code, 5, 7, charge, NOW)
        for i, (tier, code) in enumerate([("default", 200), ("priority", 200), ("default", 500)])
    ]
    await store.record_calls(answered)
    await store.record_calls([])
    by_tier = {row.key: row for row in await store.ledger("tier")}
    assert by_tier["default"].requests == 2 and by_tier["priority"].requests == 1
    assert by_tier["default"].cost == Decimal("0.004")
    assert by_tier["default"].prompt_tokens == 10 and by_tier["default"].compute_seconds == 0.5
    by_batch = {row.key: row.requests for row in await store.ledger("batch")}
    assert by_batch == {"calls:default": 2, "calls:priority": 1}  # one line per tier
    assert await store.queue_depth() == {}  # answered: nothing is left to run
    assert await store.pending_heads(["m"]) == {}


async def test_pending_heads_count_up_to_a_cap(store: Store) -> None:
    assert await store.pending_heads(["m"]) == {}
    batch = await make_batch(store, 5)
    await store.enqueue_call(call("call_soon", seconds=30), NOW)
    heads = await store.pending_heads(["m", "other"], cap=3)
    assert heads == {"m": (3, NOW + timedelta(seconds=30))}  # the call is leased first
    assert await store.pending_heads(["m"], batches=[batch.id]) == {"m": (5, batch.expires_at)}
    assert await store.lease("w", ["m"], 10, NOW, 30) is not None
    assert await store.pending_heads(["m"]) == {}


def session(session_id: str, project: str = "p1", **extra: Any) -> Session:
    return Session(
        id=session_id,
        project=project,
        agent="review",
        version="v1",
        arguments={"repo": "x"},
        status=SessionStatus.QUEUED,
        created_at=NOW,
        updated_at=NOW,
        **extra,
    )


async def test_a_session_is_journalled_only_by_the_worker_that_holds_it(store: Store) -> None:
    await store.add_session(session("sess_a"))
    assert (await store.get_session("p1", "sess_a")).status is SessionStatus.QUEUED
    with pytest.raises(NotFound):
        await store.get_session("p2", "sess_a")
    [taken] = await store.claim_sessions("w1", NOW, 30, limit=10)
    assert (taken.id, taken.status, taken.owner) == ("sess_a", SessionStatus.RUNNING, "w1")
    assert await store.claim_sessions("w2", NOW, 30, limit=10) == []  # held
    step = Entry(0, EntryKind.STEP, "list_files", ["a.py", "b.py"])
    assert await store.append_entry("sess_a", "w1", step, NOW)
    # Not the journal's end, or not the holder: nothing is written.
    assert not await store.append_entry("sess_a", "w1", step, NOW)
    assert not await store.append_entry("sess_a", "w2", replace(step, seq=1), NOW)
    # The lease runs out: another worker takes it over, and the first writes nothing.
    later = NOW + timedelta(seconds=31)
    [again] = await store.claim_sessions("w2", later, 30, limit=10)
    assert again.owner == "w2" and again.steps == 1
    assert not await store.hold_session("sess_a", "w1", later, 30)
    assert await store.hold_session("sess_a", "w2", later, 30)
    assert not await store.end_session("sess_a", "w1", SessionStatus.COMPLETED, later, 1.0)
    assert await store.append_entry(
        "sess_a", "w2", Entry(1, EntryKind.STEP, "comment", {"ok": True}), later
    )
    assert [(e.seq, e.name, e.value) for e in await store.journal("sess_a")] == [
        (0, "list_files", ["a.py", "b.py"]),
        (1, "comment", {"ok": True}),
    ]
    assert await store.end_session(
        "sess_a", "w2", SessionStatus.COMPLETED, later, 2.5, result="done"
    )
    ended = await store.get_session(None, "sess_a")
    assert (ended.status, ended.result, ended.active_seconds) == ("completed", "done", 2.5)
    assert await store.claim_sessions("w3", later + timedelta(days=1), 30, limit=10) == []
    with pytest.raises(Conflict):
        await store.send_event("p1", "sess_a", "approval", True, later)
    with pytest.raises(Conflict):
        await store.cancel_session("p1", "sess_a", later)
    page = await store.list_sessions("p1", limit=10, after=None)
    assert [s.id for s in page.items] == ["sess_a"] and not page.has_more


async def test_a_waiting_session_wakes_for_its_timer_event_or_calls(store: Store) -> None:
    for name in ("sess_t", "sess_e", "sess_c", "sess_early"):
        await store.add_session(session(name))
    assert len(await store.claim_sessions("w", NOW, 30, limit=10)) == 4
    until = NOW + timedelta(hours=1)
    assert await store.suspend_session("sess_t", "w", Waiting(until=until), NOW, 0.5)
    assert await store.suspend_session("sess_e", "w", Waiting(event="approval"), NOW, 0.5)
    await store.enqueue_call(call("call_1"), NOW)
    await store.enqueue_call(call("call_2"), NOW)
    calls = Waiting(calls=("call_1", "call_2"))
    assert await store.suspend_session("sess_c", "w", calls, NOW, 0.5)
    # An event sent before the session waits for it is kept, and the wait finds it.
    await store.send_event("p1", "sess_early", "approval", {"by": "ann"}, NOW)
    assert await store.suspend_session("sess_early", "w", Waiting(event="approval"), NOW, 0)
    soon = NOW + timedelta(seconds=1)
    [early] = await store.claim_sessions("w", soon, 30, limit=10)
    assert early.id == "sess_early"
    taken = await store.take_event("sess_early", "approval")
    assert taken is not None and taken[1] == {"by": "ann"}
    entry = Entry(0, EntryKind.EVENT, "approval", taken[1])
    assert await store.append_entry("sess_early", "w", entry, soon, event_id=taken[0])
    assert await store.take_event("sess_early", "approval") is None  # taken once
    waiting = await store.get_session("p1", "sess_e")
    assert waiting.status is SessionStatus.WAITING and waiting.waiting == Waiting(event="approval")
    agent = session("x").agent
    assert await store.session_counts() == {(agent, "waiting"): 3, (agent, "running"): 1}
    # The event comes; the calls finish one by one; the timer runs out.
    await store.send_event("p1", "sess_e", "approval", True, soon)
    assert [s.id for s in await store.claim_sessions("w", soon, 30, limit=10)] == ["sess_e"]
    await store.cancel_call("call_1", soon)
    assert await store.wake_for_calls(["call_1"], soon) == 0  # call_2 is still queued
    # The last call is answered by a worker: the session wakes in that transaction.
    lease = await store.lease("worker", ["m"], 5, soon, 30)
    assert lease is not None and [r.batch_id for r in lease.requests] == ["call_2"]
    answer = Outcome(200, {"object": "chat.completion"}, Usage(1, 1))
    await record(store, lease.id, [Result(lease.requests[0].id, answer)], now=soon)
    assert await store.wake_for_calls(["call_2"], soon) == 0  # woken already
    # A session's own calls (`<session>.<place>`) are its lines of the ledger.
    await store.enqueue_call(call("sess_c.3"), soon)
    lease = await store.lease("worker", ["m"], 5, soon, 30)
    assert lease is not None
    charge = Charge("local", 0.5, Decimal("0.002"), Decimal("0.01"))
    await record(store, lease.id, [Result(lease.requests[0].id, answer, charge)], now=soon)
    [line] = await store.ledger("session")
    assert (line.key, line.requests, line.cost) == ("sess_c", 1, Decimal("0.002"))
    assert await store.ledger("session", session="sess_c") == [line]
    assert await store.ledger("session", session="sess_e") == []
    assert [s.id for s in await store.claim_sessions("w", soon, 30, limit=10)] == ["sess_c"]
    for name in ("sess_early", "sess_e", "sess_c"):
        assert await store.end_session(name, "w", SessionStatus.FAILED, soon, 0.1)
    assert await store.claim_sessions("w", until - timedelta(seconds=1), 30, limit=10) == []
    assert [s.id for s in await store.claim_sessions("w", until, 30, limit=10)] == ["sess_t"]
    with pytest.raises(NotFound):
        await store.send_event("p2", "sess_t", "approval", True, soon)


async def test_a_session_forks_from_a_place_in_its_journal(store: Store) -> None:
    await store.add_session(session("sess_f"))
    await store.claim_sessions("w", NOW, 30, limit=10)
    for seq in range(3):
        entry = Entry(seq, EntryKind.STEP, f"step{seq}", seq)
        assert await store.append_entry("sess_f", "w", entry, NOW)
    fork = session("sess_g", steps=2, forked_from="sess_f", forked_at=2)
    made = await store.fork_session("p1", "sess_f", 2, fork)
    assert (made.status, made.steps, made.forked_from) == ("queued", 2, "sess_f")
    assert [e.name for e in await store.journal("sess_g")] == ["step0", "step1"]
    with pytest.raises(InvalidRequest, match="3 journal entries"):
        await store.fork_session("p1", "sess_f", 4, session("sess_h", steps=4))
    with pytest.raises(NotFound):
        await store.fork_session("p2", "sess_f", 1, session("sess_h", steps=1))
    cancelled = await store.cancel_session("p1", "sess_g", NOW)
    assert cancelled.status is SessionStatus.CANCELLED
    # The fork is cancelled; only the original (its lease run out) is due.
    due = await store.claim_sessions("w", NOW + timedelta(days=1), 30, limit=10)
    assert [s.id for s in due] == ["sess_f"]


async def test_a_cancelled_session_cancels_the_calls_it_waits_for(store: Store) -> None:
    await store.add_session(session("sess_x"))
    await store.claim_sessions("w", NOW, 30, limit=10)
    await store.enqueue_call(call("sess_x.0"), NOW)
    assert await store.suspend_session("sess_x", "w", Waiting(calls=("sess_x.0",)), NOW, 0)
    cancelled = await store.cancel_session("p1", "sess_x", NOW)
    assert cancelled.status is SessionStatus.CANCELLED
    state = (await store.call_states(["sess_x.0"]))["sess_x.0"]
    assert state.status is RequestStatus.CANCELLED
    assert await store.lease("w", ["m"], 5, NOW, 30) is None  # nothing left to run


def prediction_job(job_id: str, model: str = "m", **extra: Any) -> PredictionJob:
    return PredictionJob(
        id=job_id,
        project="p1",
        model=model,
        source="/data/t.csv",
        format=TableFormat.CSV,
        key="id",
        output="predict",
        chunk_rows=2,
        status=JobStatus.QUEUED,
        created_at=NOW,
        **{"deadline": NOW + timedelta(hours=1), **extra},
    )


async def test_a_dataset_job_records_each_chunk_once_and_swaps_its_predictions_in(
    store: Store,
) -> None:
    await store.add_job(prediction_job("pjob_1"))
    await store.add_job(prediction_job("pjob_2", deadline=NOW + timedelta(minutes=5)))
    assert [j.id for j in (await store.list_jobs("p1", limit=10, after=None)).items] == [
        "pjob_2",
        "pjob_1",
    ]
    # The nearest deadline first; a job held by a live lease is not taken again.
    job = await store.claim_job("w1", NOW, 30, ["m"])
    assert job is not None and job.id == "pjob_2" and job.status is JobStatus.RUNNING
    assert await store.claim_job("w2", NOW, 30, ["m"], "pjob_2") is None
    assert await store.claim_job("w2", NOW, 30, ["other-model"]) is None
    first = Chunk(0, 2, 0.5, [("a", "1"), ("b", "2")])
    assert await store.record_chunk(job, "w1", first, NOW, 30)
    assert not await store.record_chunk(job, "w2", Chunk(1, 1, 0.1, [("c", "3")]), NOW, 30)
    assert await store.recorded_chunks("pjob_2") == {0}
    assert await store.predicted_keys(job) == {"a", "b"}  # what a resumed run leaves out
    sized = {j.id: (j.rows_left, j.seconds_per_row) for j in await store.open_jobs()}
    assert sized == {"pjob_2": (1, 0.25), "pjob_1": (2, None)}  # measured from its chunk
    assert await store.hold_job("pjob_2", "w1", NOW, 30)
    assert await store.precomputed("m", "a") is None  # not until the job completes
    # Its lease runs out: another worker takes it over, and the first can write nothing.
    later = NOW + timedelta(seconds=31)
    taken = await store.claim_job("w2", later, 30, ["m"], "pjob_2")
    assert taken is not None and taken.chunks_done == 1 and taken.rows_done == 2
    assert not await store.hold_job("pjob_2", "w1", later, 30)
    assert await store.record_chunk(taken, "w2", Chunk(1, 1, 0.1, [("c", "3")]), later, 30)
    assert await store.end_job(
        taken, "w2", JobStatus.COMPLETED, later, total_rows=3, result="out.csv"
    )
    done = await store.get_job("p1", "pjob_2")
    assert (done.status, done.total_rows, done.chunks_done, done.result) == (
        JobStatus.COMPLETED,
        3,
        2,
        "out.csv",
    )
    assert done.compute_seconds == pytest.approx(0.6)
    hit = await store.precomputed("m", "c")
    assert hit is not None and (hit.value, hit.version, hit.computed_at) == (3, "pjob_2", later)
    many = await store.precomputed_many("m", ["a", "c", "nope"])
    assert {k: (h.value, h.output) for k, h in many.items()} == {
        "a": (1, "predict"),
        "c": (3, "predict"),
    }
    # The next job's predictions replace these whole when it completes, not before.
    other = await store.claim_job("w1", later, 30, ["m"])
    assert other is not None and other.id == "pjob_1"
    assert await store.record_chunk(other, "w1", Chunk(0, 1, 0.1, [("a", "9")]), later, 30)
    assert (await store.precomputed("m", "a")).value == 1  # type: ignore[union-attr]
    assert await store.end_job(other, "w1", JobStatus.COMPLETED, later, total_rows=1)
    assert (await store.precomputed("m", "a")).value == 9  # type: ignore[union-attr]
    assert await store.precomputed("m", "c") is None  # the older version is gone
    # Cancelled, a queued job is never taken; a failed job's rows are not served.
    await store.add_job(prediction_job("pjob_3"))
    cancelled = await store.cancel_job("p1", "pjob_3", later)
    assert cancelled.status is JobStatus.CANCELLED
    assert await store.claim_job("w1", later, 30, ["m"]) is None
    with pytest.raises(NotFound):
        await store.get_job("p2", "pjob_1")


async def test_a_schedule_starts_each_run_once(store: Store) -> None:
    schedule = Schedule(
        id="sched_1",
        project="p1",
        model="m",
        source="/data/t.csv",
        key="id",
        output="predict",
        chunk_rows=10,
        next_run_at=NOW,
        created_at=NOW,
        every_seconds=3600,
    )
    await store.add_schedule(schedule)
    assert [s.id for s in (await store.list_schedules("p1", limit=5, after=None)).items] == [
        "sched_1"
    ]
    assert await store.due_schedules(NOW - timedelta(seconds=1)) == []
    [due] = await store.due_schedules(NOW)
    runs = [prediction_job("pjob_r1", schedule_id="sched_1")]
    assert await store.start_runs(due, NOW + timedelta(hours=1), runs)
    assert not await store.start_runs(due, NOW + timedelta(hours=1), runs)  # started once
    assert (await store.get_schedule("p1", "sched_1")).next_run_at == NOW + timedelta(hours=1)
    assert [r.id for r in await store.schedule_runs("sched_1", 10)] == ["pjob_r1"]
    await store.delete_schedule("p1", "sched_1")
    with pytest.raises(NotFound):
        await store.get_schedule("p1", "sched_1")
    with pytest.raises(NotFound):
        await store.delete_schedule("p1", "sched_1")


async def test_the_migrations_build_the_schema_the_code_declares(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from slackwater.store.schema import metadata

    engine = getattr(store, "engine", None)
    if engine is None:
        pytest.skip("not a SQL store")
    async with engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert differences == []


def test_every_port_method_is_exercised() -> None:
    """The suite covers the whole port: a method added to `Store` needs a test here."""
    import inspect
    import re

    source = inspect.getsource(inspect.getmodule(test_every_port_method_is_exercised))
    called = set(re.findall(r"\bstore\.(\w+)\(", source))
    methods = {
        name
        for klass in Store.__mro__
        for name, member in vars(klass).items()
        if callable(member) and not name.startswith("_")
    }
    assert methods - called == set()
