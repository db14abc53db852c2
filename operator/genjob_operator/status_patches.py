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

from genjob.jobspec import (
    ColdStart,
    Condition,
    GenerationJobStatus,
    JobResult,
    Phase,
    Progress,
    Reason,
    Usage,
)
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


def _reason(raw: str | None, default: Reason) -> Reason:
    """A queue or worker reason as the CRD's enum (an unknown one would make the API server
    refuse the whole patch)."""
    if raw and raw in Reason.__members__.values():
        return Reason(raw)
    if raw:
        log.warning("reason not in the GenerationJob contract; reported as the default", reason=raw)
    return default


def succeeded_condition(phase: Phase, reason: Reason | None, message: str | None, at: str) -> Condition:
    """The `Succeeded` condition (`kubectl wait --for=condition=Succeeded`): Unknown until the
    job is final, then True or False with the reason."""
    status = "Unknown" if not phase.is_final else "True" if phase == Phase.SUCCEEDED else "False"
    return Condition(
        type="Succeeded",
        status=status,
        reason=str(reason) if phase.is_final and reason is not None else str(phase),
        message=message,
        last_transition_time=at,
    )


def status_patch(**fields: Any) -> dict[str, Any]:
    """A status merge patch, validated by `GenerationJobStatus` (snake_case fields in, the CR's
    camelCase out; a field given as None is cleared). A patch that sets the phase also sets the
    `Succeeded` condition, dated by the patch's own time of the transition."""
    phase = fields.get("phase")
    if phase is not None:
        at = fields.get("finished_at") or fields.get("started_at") or fields.get("queued_at") or now_rfc3339()
        fields["conditions"] = [
            succeeded_condition(Phase(phase), fields.get("reason"), fields.get("message"), at)
        ]
    status = GenerationJobStatus(**fields)
    patch = status.model_dump(by_alias=True, mode="json", exclude_unset=True)
    return {key: _without_nulls(value) for key, value in patch.items()}


def _without_nulls(value: Any) -> Any:
    """Nested nulls dropped: only a top-level null means "clear" in a merge patch; inside a
    replaced list (conditions) it would break the CRD's schema."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _result(raw: dict[str, Any] | None) -> JobResult | None:
    if raw is None:
        return None
    try:
        return JobResult.model_validate(raw)
    except ValidationError:
        log.warning("worker result does not match JobResult; not mirrored (the CRD would refuse it)")
        return None


def _usage(gpu_seconds: Any) -> dict[str, Any]:
    return {"usage": Usage(gpu_seconds=round(float(gpu_seconds), 3))} if gpu_seconds not in (None, "") else {}


def progress_fields(step: int, total: int) -> dict[str, Any]:
    return status_patch(progress=Progress(step=step, total=total), progress_text=f"{step}/{total}")


def worker_start_fields(start: WorkerStart | None) -> ColdStart | None:
    """The worker's part of status.coldStart (None: a warm job, which clears an earlier one)."""
    return ColdStart.from_worker_start(start) if start is not None else None


def event_to_status_patch(event: JobEvent) -> dict[str, Any] | None:
    """The status merge patch one queue event asks for (None: nothing to write)."""
    f, t = event.fields, event.type
    attempt = event.int_field("attempt")
    attempts = {"attempts": attempt} if attempt is not None else {}
    if t == EventType.QUEUED:
        fields: dict[str, Any] = {
            "phase": Phase.QUEUED,
            "queued_at": _ts(event),
            "reason": None,
            "message": None,
        }
        model = event.meta.get("model")
        if model:
            fields["model"] = model
        if f.get("reason") == "Redriven":
            fields.update(message="redriven from the dead-letter list", attempts=0, finished_at=None)
        return status_patch(**fields)
    if t == EventType.RUNNING:
        wait_ms = event.int_field("wait_ms")
        return status_patch(
            phase=Phase.RUNNING,
            worker=f.get("worker"),
            started_at=_ts(event),
            reason=None,
            message=None,
            cold_start=worker_start_fields(WorkerStart.from_json(f.get("cold", ""))),
            **({"queue_seconds": round(max(0, wait_ms) / 1000, 3)} if wait_ms is not None else {}),
            **attempts,
        )
    if t in (EventType.REQUEUED, EventType.RETRYING):
        message = f.get("message") or None
        if t == EventType.RETRYING:
            delay = (event.int_field("delay_ms") or 0) / 1000
            message = f"attempt {attempt} failed: {message or f.get('reason')}; retrying in {delay:g}s"
        return status_patch(
            phase=Phase.QUEUED,
            reason=_reason(f.get("reason"), Reason.GENERATION_ERROR) if f.get("reason") else None,
            message=message,
            worker=None,
            progress=None,
            progress_text=None,
            **attempts,
        )
    if t == EventType.RESUMED:
        return status_patch(
            resumed_from_step=event.int_field("step"), steps_saved=event.int_field("steps_saved")
        )
    if t == EventType.WARNING:
        return status_patch(message=f.get("message") or None)
    if t == EventType.PROGRESS:
        step, total = event.int_field("step"), event.int_field("total")
        return progress_fields(step, total) if step is not None and total is not None else None
    usage = _usage(f.get("gpu_seconds"))
    if t == EventType.SUCCEEDED:
        return status_patch(
            phase=Phase.SUCCEEDED,
            reason=Reason.COMPLETED,
            message=None,
            finished_at=_ts(event),
            result=_result(event.result),
            **usage,
        )
    if t == EventType.FAILED:
        return status_patch(
            phase=Phase.FAILED,
            reason=_reason(f.get("reason"), Reason.GENERATION_ERROR),
            message=f.get("message") or None,
            finished_at=_ts(event),
            **usage,
            **attempts,
        )
    if t == EventType.CANCELLED:
        return status_patch(
            phase=Phase.CANCELLED,
            reason=Reason.CANCELLED,
            message=f.get("message") or "cancelled",
            finished_at=_ts(event),
            **usage,
        )
    return None  # cancel_requested


# A finished queue record's phase and the reason it gets when it carries none.
_FINAL_RECORD: dict[JobState, tuple[Phase, Reason]] = {
    JobState.SUCCEEDED: (Phase.SUCCEEDED, Reason.COMPLETED),
    JobState.FAILED: (Phase.FAILED, Reason.GENERATION_ERROR),
    JobState.CANCELLED: (Phase.CANCELLED, Reason.CANCELLED),
}


def record_to_status_patch(record: JobRecord) -> dict[str, Any] | None:
    """The final status a finished queue record implies (None while it is not finished)."""
    if not record.state.is_final:
        return None
    phase, default_reason = _FINAL_RECORD[record.state]
    fields: dict[str, Any] = {
        "phase": phase,
        "reason": _reason(record.reason, default_reason),
        "message": record.message or None,
        "usage": Usage(gpu_seconds=round(record.gpu_seconds, 3)),
        "cold_start": worker_start_fields(record.cold_start),
    }
    # status.attempts is the attempt number, as on the events: the record counts failed attempts.
    if phase == Phase.SUCCEEDED:
        fields["attempts"] = record.attempts + 1
    elif phase == Phase.FAILED:
        fields["attempts"] = record.attempts
    if record.finished_at_ms:
        fields["finished_at"] = now_rfc3339(record.finished_at_ms / 1000)
    if record.started_at_ms:
        fields["started_at"] = now_rfc3339(record.started_at_ms / 1000)
    if record.worker:
        fields["worker"] = record.worker
    if record.queue_seconds is not None:
        fields["queue_seconds"] = round(record.queue_seconds, 3)
    if phase == Phase.SUCCEEDED:
        fields["result"] = _result(record.result)
        if record.progress_total:
            total = record.progress_total
            fields.update(progress=Progress(step=total, total=total), progress_text=f"{total}/{total}")
    return status_patch(**fields)


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
        if "phase" in patch:
            u.final = Phase(patch["phase"]).is_final
        u.patch.update(patch)
    return updates
