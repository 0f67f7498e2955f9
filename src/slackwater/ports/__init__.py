"""The seams between the core and its adapters.

    runtime parts ──► role protocols (ports.store) ◄── store.SqlStore (SQLite, PostgreSQL)
                  ──► Engine (ports.engine)        ◄── engines.* (entry points)
                  ──► BlobStore, PriceFeed, Clock  ◄── store.blobs, feeds.*

The records that cross them are in `ports.records`. Everything is re-exported here.
"""

from slackwater.ports.engine import (
    Between,
    BlobStore,
    Clock,
    Engine,
    PoolState,
    PriceFeed,
    SteppingEngine,
)
from slackwater.ports.records import (
    LEDGER_GROUPS,
    CachedResult,
    CallState,
    CheckOutcomes,
    Delivery,
    Escalation,
    FinishedRequest,
    Lease,
    LedgerEntry,
    LedgerRow,
    OpenWork,
    Page,
    QueuedCall,
    Retry,
    Settlement,
    StagedRequest,
    StoredResponse,
)
from slackwater.ports.store import (
    BatchStore,
    CallStore,
    CapacityStore,
    EndpointStore,
    FileStore,
    FinalizerStore,
    IntakeStore,
    KeyStore,
    Lifecycle,
    MonitorStore,
    OutboxStore,
    ReportStore,
    Store,
    WorkerStore,
)

__all__ = [
    "LEDGER_GROUPS",
    "BatchStore",
    "Between",
    "BlobStore",
    "CachedResult",
    "CallState",
    "CallStore",
    "CapacityStore",
    "CheckOutcomes",
    "Clock",
    "Delivery",
    "EndpointStore",
    "Engine",
    "Escalation",
    "FileStore",
    "FinalizerStore",
    "FinishedRequest",
    "IntakeStore",
    "KeyStore",
    "Lease",
    "LedgerEntry",
    "LedgerRow",
    "Lifecycle",
    "MonitorStore",
    "OpenWork",
    "OutboxStore",
    "Page",
    "PoolState",
    "PriceFeed",
    "QueuedCall",
    "ReportStore",
    "Retry",
    "Settlement",
    "StagedRequest",
    "SteppingEngine",
    "Store",
    "StoredResponse",
    "WorkerStore",
]
