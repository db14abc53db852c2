"""The Redis queue protocol: enqueue, claim with leases, heartbeat, finish, reap, dead letters, events."""

from genjob.queue.core import JobQueue
from genjob.queue.events import EventReader, EventType, JobEvent, read_history
from genjob.queue.records import (
    CancelOutcome,
    Checkpointed,
    ClaimedJob,
    EnqueueResult,
    FinishResult,
    JobRecord,
    JobState,
    NewJob,
    Place,
    ReapResult,
    TierStats,
    Touch,
    WorkerStart,
)

__all__ = [
    "CancelOutcome",
    "Checkpointed",
    "ClaimedJob",
    "EnqueueResult",
    "EventReader",
    "EventType",
    "FinishResult",
    "JobEvent",
    "JobQueue",
    "JobRecord",
    "JobState",
    "NewJob",
    "Place",
    "ReapResult",
    "TierStats",
    "Touch",
    "WorkerStart",
    "read_history",
]
