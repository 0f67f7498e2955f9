"""SqlStore: the Store port on SQLAlchemy Core, for SQLite (embedded) and PostgreSQL.

One class per noun, each in its own module on the shared `Database` (engine,
transactions, dialect helpers); SqlStore is all of them. Runtime parts see it only
through the narrow role protocols in `slackwater.ports.store`.
"""

from __future__ import annotations

from slackwater.store.batches import SqlBatches
from slackwater.store.endpoints import SqlEndpoints
from slackwater.store.files import SqlFiles
from slackwater.store.keys import SqlKeys
from slackwater.store.ledger import SqlLedger
from slackwater.store.outbox import SqlOutbox
from slackwater.store.pools import SqlPools
from slackwater.store.predictions import SqlPredictions
from slackwater.store.queue import SqlQueue
from slackwater.store.responses import SqlResponses
from slackwater.store.results import SqlResults
from slackwater.store.schedules import SqlSchedules
from slackwater.store.sessions import SqlSessions
from slackwater.store.staging import SqlStaging
from slackwater.store.workers import SqlWorkers


class SqlStore(
    SqlFiles,
    SqlBatches,
    SqlStaging,
    SqlQueue,
    SqlResults,
    SqlLedger,
    SqlOutbox,
    SqlKeys,
    SqlWorkers,
    SqlPools,
    SqlResponses,
    SqlEndpoints,
    SqlSessions,
    SqlPredictions,
    SqlSchedules,
):
    def __init__(self, url: str, *, echo: bool = False, webhooks: bool = False) -> None:
        super().__init__(url, echo=echo)
        self.webhooks = webhooks
