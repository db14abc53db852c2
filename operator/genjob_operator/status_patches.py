"""Queue events and records -> GenerationJob status merge patches (pure functions).

Mapping (`event_to_status_patch`):
queued -> Queued (queuedAt, model); running -> Running (worker, startedAt, attempts,
queueSeconds, and coldStart for a worker's first job: see cold_start.py);
requeued/retrying -> Queued with reason (WorkerLost, Preempted, ...) and message;
succeeded -> Succeeded (result, usage.gpuSeconds, finishedAt); failed -> Failed (reason,
message, attempts); cancelled -> Cancelled; progress -> progress/progressText;
cancel_requested -> nothing (the CR is being deleted); resumed -> resumedFromStep and
stepsSaved (a worker continued a preempted job from its checkpoint); warning -> message
(and a Kubernetes Warning Event, e.g. a refused checkpoint: the job started over).
`fold_events` folds a batch into one patch per job; `record_to_status_patch` derives the
final status from a finished queue record (the resync of `status_sync`).
`status.attempts` is the attempt number, as on the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError

from genjob.jobspec import ColdStart, JobResult, Phase
from genjob.queue import EventType, JobEvent, JobRecord, JobState, WorkerStart
from genjob_operator.kube import now_rfc3339

log = structlog.get_logger("genjob.operator.status")

# (k8s Event reason, warning?) per transition; progress and cancel_requested post none.
EVENT_REASONS: dict[EventType, tuple[str, bool]] = {
    EventType.QUEUED: ("Queued", False),
    EventType.RUNNING: ("Running", False),
    EventType.REQUEUED: ("Requeued", True),
    EventType.RETRYING: ("Retrying", True),
    EventType.SUCCEEDED: ("Succeeded", False),
    EventType.FAILED: ("Failed", True),
    EventType.CANCELLED: ("Cancelled", False),
    EventType.RESUMED: ("Resumed", False),
    EventType.WARNING: ("Warning", True),
}


def _ts(event: JobEvent) -> str:
    return now_rfc3339(event.ts_ms / 1000)


def _result(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        return JobResult.model_validate(raw).to_wire()
    except ValidationError:
        log.warning("worker result does not match JobResult; mirrored as is")
        return raw


def progress_fields(step: int, total: int) -> dict[str, Any]:
    return {"progress": {"step": step, "total": total}, "progressText": f"{step}/{total}"}


def worker_start_fields(start: WorkerStart | None) -> dict[str, Any] | None:
    """The worker's part of status.coldStart (None: a warm job, which clears an earlier one)."""
    return ColdStart.from_worker_start(start).to_wire() if start is not None else None


def event_to_status_patch(event: JobEvent) -> dict[str, Any] | None:
    """The status merge patch one queue event asks for (None: nothing to write)."""
    f, t = event.fields, event.type
    attempt = event.int_field("attempt")
    gpu = f.get("gpu_seconds")
    usage = {"usage": {"gpuSeconds": round(float(gpu), 3)}} if gpu not in (None, "") else {}
    if t == EventType.QUEUED:
        patch: dict[str, Any] = {
            "phase": Phase.QUEUED,
            "queuedAt": _ts(event),
            "reason": None,
            "message": None,
        }
        model = event.meta.get("model")
        if model:
            patch["model"] = model
        if f.get("reason") == "Redriven":
            patch.update(
                reason=None, message="redriven from the dead-letter list", attempts=0, finishedAt=None
            )
        return patch
    if t == EventType.RUNNING:
        patch = {
            "phase": Phase.RUNNING,
            "worker": f.get("worker"),
            "startedAt": _ts(event),
            "reason": None,
            "message": None,
            "coldStart": worker_start_fields(WorkerStart.from_json(f.get("cold", ""))),
        }
        wait_ms = event.int_field("wait_ms")
        if wait_ms is not None:
            patch["queueSeconds"] = round(max(0, wait_ms) / 1000, 3)
        if attempt is not None:
            patch["attempts"] = attempt
        return patch
    if t == EventType.REQUEUED:
        patch = {
            "phase": Phase.QUEUED,
            "reason": f.get("reason") or None,
            "message": f.get("message") or None,
            "worker": None,
            "progress": None,
            "progressText": None,
        }
        if attempt is not None:
            patch["attempts"] = attempt
        return patch
    if t == EventType.RETRYING:
        delay = (event.int_field("delay_ms") or 0) / 1000
        message = f"attempt {attempt} failed: {f.get('message') or f.get('reason')}; retrying in {delay:g}s"
        return {
            "phase": Phase.QUEUED,
            "reason": f.get("reason") or None,
            "message": message,
            "attempts": attempt,
            "worker": None,
            "progress": None,
            "progressText": None,
        }
    if t == EventType.RESUMED:
        return {"resumedFromStep": event.int_field("step"), "stepsSaved": event.int_field("steps_saved")}
    if t == EventType.WARNING:
        return {"message": f.get("message") or None}
    if t == EventType.PROGRESS:
        step, total = event.int_field("step"), event.int_field("total")
        return progress_fields(step, total) if step is not None and total is not None else None
    if t == EventType.SUCCEEDED:
        patch = {
            "phase": Phase.SUCCEEDED,
            "reason": "Completed",
            "message": None,
            "finishedAt": _ts(event),
            "result": _result(event.result),
            **usage,
        }
        return patch
    if t == EventType.FAILED:
        patch = {
            "phase": Phase.FAILED,
            "reason": f.get("reason") or "GenerationError",
            "message": f.get("message") or None,
            "finishedAt": _ts(event),
            **usage,
        }
        if attempt is not None:
            patch["attempts"] = attempt
        return patch
    if t == EventType.CANCELLED:
        return {
            "phase": Phase.CANCELLED,
            "reason": "Cancelled",
            "message": f.get("message") or "cancelled",
            "finishedAt": _ts(event),
            **usage,
        }
    return None  # cancel_requested


FINAL_PHASE = {
    JobState.SUCCEEDED: Phase.SUCCEEDED,
    JobState.FAILED: Phase.FAILED,
    JobState.CANCELLED: Phase.CANCELLED,
}


def record_to_status_patch(record: JobRecord) -> dict[str, Any] | None:
    """The final status a finished queue record implies (None while it is not finished)."""
    phase = FINAL_PHASE.get(record.state)
    if phase is None:
        return None
    patch: dict[str, Any] = {
        "phase": phase,
        "reason": record.reason or ("Completed" if phase == Phase.SUCCEEDED else phase),
        "message": record.message or None,
        "usage": {"gpuSeconds": round(record.gpu_seconds, 3)},
    }
    # status.attempts is the attempt number, as on the events: the record counts failed attempts.
    if phase == Phase.SUCCEEDED:
        patch["attempts"] = record.attempts + 1
    elif phase == Phase.FAILED:
        patch["attempts"] = record.attempts
    if record.finished_at_ms:
        patch["finishedAt"] = now_rfc3339(record.finished_at_ms / 1000)
    if record.started_at_ms:
        patch["startedAt"] = now_rfc3339(record.started_at_ms / 1000)
    if record.worker:
        patch["worker"] = record.worker
    if record.queue_seconds is not None:
        patch["queueSeconds"] = round(record.queue_seconds, 3)
    patch["coldStart"] = worker_start_fields(record.cold_start)
    if phase == Phase.SUCCEEDED:
        patch["result"] = _result(record.result)
        if record.progress_total:
            patch.update(progress_fields(record.progress_total, record.progress_total))
    return patch


def event_message(event: JobEvent) -> str:
    f = event.fields
    if event.type == EventType.RUNNING:
        return f"running on worker {f.get('worker')} (attempt {f.get('attempt')})"
    if event.type == EventType.SUCCEEDED:
        images = (event.result or {}).get("images") or []
        uris = ", ".join(str(i.get("uri")) for i in images[:4])
        return f"succeeded: {uris or 'no images'}"
    if event.type == EventType.QUEUED:
        return f"queued in tier {event.tier}"
    if event.type == EventType.RESUMED:
        return (
            f"resumed from step {f.get('step')}/{f.get('total')} ({f.get('steps_saved')} steps saved in all)"
        )
    return f.get("message") or f.get("reason") or event.type.value


@dataclass
class JobUpdate:
    """Everything one batch asks for one job."""

    job_id: str
    meta: dict[str, Any]
    patch: dict[str, Any] = field(default_factory=dict)
    transitions: list[JobEvent] = field(default_factory=list)
    progress_only: bool = True
    final: bool = False


def fold_events(events: list[JobEvent]) -> dict[str, JobUpdate]:
    """Group a batch by job, in stream order; later fields win."""
    updates: dict[str, JobUpdate] = {}
    for event in events:
        patch = event_to_status_patch(event)
        if patch is None:
            continue
        u = updates.get(event.job_id)
        if u is None:
            u = updates[event.job_id] = JobUpdate(event.job_id, event.meta)
        if event.type != EventType.PROGRESS:
            u.progress_only = False
            u.transitions.append(event)
        u.final = event.type in (EventType.SUCCEEDED, EventType.FAILED, EventType.CANCELLED)
        u.patch.update(patch)
    return updates
