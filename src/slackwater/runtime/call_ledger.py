"""The ledger of calls answered in real time: what each cost where it ran, by its tier,
beside queued calls and batch lines (`slackwater report --by tier`).

Calls are priced as a worker prices its requests (`policy.ledger`) and written in the
background, many to a transaction every `flush_seconds`, so answering never waits for
the store. What has not been written when the process dies is lost from the ledger
(the answers themselves were already given); a clean stop writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from slackwater.domain.ids import new_id
from slackwater.domain.pool import Pool
from slackwater.policy.ledger import charges
from slackwater.ports import AnsweredCall, CallStore, Clock
from slackwater.runtime.engines import Answered

log = logging.getLogger(__name__)


class CallLedger:
    def __init__(
        self,
        store: CallStore,
        clock: Clock,
        pool: Pool,
        *,
        venues: Mapping[str, Pool] | None = None,
        flush_seconds: float = 0.5,
    ) -> None:
        self.store = store
        self.clock = clock
        self.pool = pool
        # Provider pools bill their models' calls by the token, not this process's pool.
        self.venues = dict(venues or {})
        self.flush_seconds = flush_seconds
        self._buffer: list[AnsweredCall] = []
        self._flushing: asyncio.Task[None] | None = None

    def add(self, answered: Answered) -> None:
        model = answered.model
        pool = self.venues.get(model.name, self.pool)
        now = self.clock()
        for outcome, charge in zip(
            answered.outcomes,
            charges(
                model,
                pool,
                answered.outcomes,
                answered.seconds,
                [answered.tier] * len(answered.outcomes),
            ),
            strict=True,
        ):
            self._buffer.append(
                AnsweredCall(
                    id=new_id("call"),
                    project=answered.project,
                    model=model.name,
                    endpoint=answered.endpoint,
                    tier=answered.tier,
                    status_code=outcome.status_code,
                    prompt_tokens=outcome.usage.prompt_tokens,
                    completion_tokens=outcome.usage.completion_tokens,
                    charge=charge,
                    finished_at=now,
                )
            )
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_seconds)
        await self.flush()

    async def flush(self) -> None:
        calls, self._buffer = self._buffer, []
        if not calls:
            return
        try:
            await self.store.record_calls(calls)
        except Exception:
            log.exception("could not write %d realtime calls to the ledger", len(calls))

    async def close(self) -> None:
        if self._flushing is not None and not self._flushing.done():
            self._flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flushing
        await self.flush()
