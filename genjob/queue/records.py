"""Plain data passed in and out of the queue: new jobs, claims, job records, outcomes, stats."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from genjob.errors import InvalidJobIdError

JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.fullmatch(job_id):
        raise InvalidJobIdError(
            f"job id {job_id!r} must be 1-128 characters of [A-Za-z0-9._:-], starting with a letter or digit"
        )
    return job_id


class JobState(StrEnum):
    """Where a job is in the queue's state machine."""

    QUEUED = "queued"  # on its tier's pending list
    DELAYED = "delayed"  # waiting for a retry backoff to pass
    RUNNING = "running"  # claimed; in-flight with a lease
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # final; in the dead-letter list
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class NewJob:
    """A job to enqueue. `spec` is the GenerationJob spec (camelCase dict); `meta` is opaque to
    the queue and travels on every event of the job (the operator keeps the CR's name there)."""

    id: str
    tier: str
    spec: dict[str, Any]
    priority: int = 0
    max_attempts: int = 3
    batch_key: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerStart:
    """How a worker started, sent with its first claim: the jobs of that claim ran cold.
    Wall-clock times of the worker's host, in ms. `pod` is "namespace/name" inside Kubernetes
    (the operator reads that pod's and its node's timestamps for the cold-start phases)."""

    process_started_at_ms: int
    ready_at_ms: int  # default model loaded: /readyz turned ready
    model_load_seconds: float
    pod: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "processStartedAtMs": self.process_started_at_ms,
                "readyAtMs": self.ready_at_ms,
                "modelLoadSeconds": round(self.model_load_seconds, 3),
                "pod": self.pod,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str) -> WorkerStart | None:
        """None for an empty or malformed value (a worker of another version)."""
        try:
            d = json.loads(raw) if raw else None
            if not isinstance(d, dict):
                return None
            return cls(
                int(d["processStartedAtMs"]),
                int(d["readyAtMs"]),
                float(d["modelLoadSeconds"]),
                str(d.get("pod", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class ClaimedJob:
    """A job a worker holds. `lease` is the token every later call must present.
    `served_tiers` are the tiers it was claimed from: heartbeats keep the worker counted in each.
    `checkpoint` is the reference of the job's latest denoising checkpoint ("" when it has none)."""

    id: str
    tier: str
    lease: str
    spec: dict[str, Any]
    attempts: int
    max_attempts: int
    enqueued_at_ms: int
    meta: dict[str, Any]
    served_tiers: tuple[str, ...] = ()
    checkpoint: str = ""

    FIELDS = 9  # values per job in the claim script's flat reply

    @classmethod
    def from_flat(cls, flat: list[Any], served_tiers: tuple[str, ...] = ()) -> ClaimedJob:
        job_id, tier, lease, spec, attempts, max_attempts, enqueued_at, meta, checkpoint = flat
        return cls(
            id=job_id,
            tier=tier,
            lease=lease,
            spec=json.loads(spec),
            attempts=int(attempts),
            max_attempts=int(max_attempts),
            enqueued_at_ms=int(enqueued_at),
            meta=json.loads(meta) if meta else {},
            served_tiers=served_tiers,
            checkpoint=checkpoint or "",
        )


@dataclass(frozen=True)
class Checkpointed:
    """A denoising checkpoint a worker wrote for a job: where it is and the step it holds."""

    ref: str
    step: int


@dataclass(frozen=True)
class JobRecord:
    """Everything the queue knows of a job (its hash)."""

    id: str
    tier: str
    state: JobState
    spec: dict[str, Any]
    attempts: int
    max_attempts: int
    priority: int
    enqueued_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    worker: str | None
    reason: str | None
    message: str | None
    result: dict[str, Any] | None
    progress_step: int | None
    progress_total: int | None
    gpu_seconds: float
    cancel_requested: bool
    meta: dict[str, Any]
    checkpoint: str | None = None  # reference of the latest denoising checkpoint
    checkpoint_step: int | None = None
    resumed_from_step: int | None = None  # the step the latest attempt resumed from (0: started over)
    steps_saved: int = 0  # denoising steps not run again thanks to checkpoints, over all attempts
    cold_start: WorkerStart | None = None  # set when the attempt that ran was its worker's first claim

    @property
    def queue_seconds(self) -> float | None:
        """Enqueue to the claim of the latest attempt."""
        if self.started_at_ms is None:
            return None
        return max(0.0, (self.started_at_ms - self.enqueued_at_ms) / 1000)

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> JobRecord:
        def opt_int(name: str) -> int | None:
            return int(h[name]) if h.get(name) else None

        return cls(
            id=h["id"],
            tier=h["tier"],
            state=JobState(h["state"]),
            spec=json.loads(h["spec"]),
            attempts=int(h.get("attempts", 0)),
            max_attempts=int(h.get("max_attempts", 1)),
            priority=int(h.get("priority", 0)),
            enqueued_at_ms=int(h["enqueued_at"]),
            started_at_ms=opt_int("started_at"),
            finished_at_ms=opt_int("finished_at"),
            worker=h.get("worker") or None,
            reason=h.get("reason") or None,
            message=h.get("message") or None,
            result=json.loads(h["result"]) if h.get("result") else None,
            progress_step=opt_int("progress_step"),
            progress_total=opt_int("progress_total"),
            gpu_seconds=float(h.get("gpu_seconds", 0) or 0),
            cancel_requested=h.get("cancel_requested") == "1",
            meta=json.loads(h["meta"]) if h.get("meta") else {},
            checkpoint=h.get("checkpoint") or None,
            checkpoint_step=opt_int("checkpoint_step"),
            resumed_from_step=opt_int("resumed_from_step"),
            steps_saved=int(h.get("steps_saved", 0) or 0),
            cold_start=WorkerStart.from_json(h.get("cold_start", "")),
        )


@dataclass(frozen=True)
class EnqueueResult:
    """`created` is False when the id was already known (the repeat was a no-op)."""

    created: bool
    state: JobState


class CancelOutcome(StrEnum):
    CANCELLED = "cancelled"  # it was waiting; it left the queue
    CANCEL_REQUESTED = "cancel_requested"  # it is running; its worker stops at the next step
    ALREADY_FINAL = "already_final"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class FinishResult:
    """What a complete/fail/requeue call did. `applied` is False for a duplicate or stale call."""

    applied: bool
    state: JobState | None
    duplicate: bool = False
    retry_delay_ms: int | None = None


@dataclass(frozen=True)
class Touch:
    """Answer to a heartbeat or progress report."""

    lease_held: bool
    cancel_requested: bool


@dataclass(frozen=True)
class ReapResult:
    requeued: int = 0
    dead_lettered: int = 0
    promoted: int = 0
    cancelled: int = 0  # expired jobs whose cancel was asked while they ran

    def __add__(self, other: ReapResult) -> ReapResult:
        return ReapResult(
            self.requeued + other.requeued,
            self.dead_lettered + other.dead_lettered,
            self.promoted + other.promoted,
            self.cancelled + other.cancelled,
        )


@dataclass(frozen=True)
class TierStats:
    tier: str
    pending: int
    inflight: int
    delayed: int
    dead: int
    oldest_pending_age_seconds: float
    workers: int = 0  # active workers of the tier (JobQueue.active_workers)


@dataclass(frozen=True)
class Place:
    """Where a job stands in its tier's line (JobQueue.place_in_line)."""

    position: int | None  # 0-based in line; None when not waiting (claimed, delayed, done)
    pending: int  # jobs waiting in the tier (the pending list and the priority set)
    workers: int  # active workers of the tier
