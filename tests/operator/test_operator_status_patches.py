"""Queue events and records -> status patches: the pure mapping and folding (no I/O)."""

from __future__ import annotations

import json

from genjob.jobspec import GenerationJobStatus
from genjob.queue import EventType, JobEvent, JobRecord, WorkerStart
from genjob_operator.status_patches import (
    EVENT_REASONS,
    event_message,
    event_to_status_patch,
    fold_events,
    record_to_status_patch,
)

RESULT = {
    "images": [{"uri": "file:///r/a.png", "sha256": "a" * 64, "sizeBytes": 10, "width": 64, "height": 64}],
    "seed": 7,
    "model": "tiny",
    "downscaled": False,
}


def ev(type_: str, job: str = "j1", ts: int = 1_700_000_000_000, **fields: str) -> JobEvent:
    meta = fields.pop("meta", json.dumps({"uid": job, "namespace": "ns", "name": "n", "model": "tiny"}))
    return JobEvent("1-0", EventType(type_), job, "free", ts, {"meta": meta, **fields})


def test_running_patch_names_worker_attempt_and_start_time():
    patch = event_to_status_patch(ev("running", worker="w1", attempt="2"))
    assert patch == {
        "phase": "Running",
        "worker": "w1",
        "startedAt": "2023-11-14T22:13:20Z",
        "attempts": 2,
        "reason": None,
        "message": None,
        "coldStart": None,  # a warm start clears an earlier attempt's
        "conditions": [
            {
                "type": "Succeeded",
                "status": "Unknown",
                "reason": "Running",
                "lastTransitionTime": "2023-11-14T22:13:20Z",
            }
        ],
    }


def test_running_patch_of_a_cold_job_carries_the_workers_start_and_the_queue_wait():
    cold = WorkerStart(1_700_000_000_250, 1_700_000_004_500, 4.125, pod="genjob/w-1").to_json()
    patch = event_to_status_patch(ev("running", worker="w1", attempt="1", wait_ms="5250", cold=cold))
    assert patch is not None and patch["queueSeconds"] == 5.25
    assert patch["coldStart"] == {
        "workerStartedAt": "2023-11-14T22:13:20.250Z",
        "workerReadyAt": "2023-11-14T22:13:24.500Z",
        "modelLoadSeconds": 4.125,
        "pod": "genjob/w-1",
    }
    GenerationJobStatus.model_validate(patch)  # the CRD's status schema accepts it


def test_succeeded_patch_carries_result_and_usage():
    patch = event_to_status_patch(ev("succeeded", result=json.dumps(RESULT), gpu_seconds="1.23456"))
    assert patch["phase"] == "Succeeded" and patch["reason"] == "Completed"
    assert patch["result"]["images"][0]["sha256"] == "a" * 64
    assert patch["result"]["seed"] == 7
    assert patch["usage"] == {"gpuSeconds": 1.235}


def test_worker_lost_requeue_and_final_failure():
    requeued = event_to_status_patch(
        ev("requeued", reason="WorkerLost", message="lease expired", attempt="1")
    )
    assert requeued["phase"] == "Queued" and requeued["reason"] == "WorkerLost" and requeued["attempts"] == 1
    failed = event_to_status_patch(ev("failed", reason="WorkerLost", message="lease expired", attempt="3"))
    assert failed["phase"] == "Failed" and failed["reason"] == "WorkerLost" and failed["attempts"] == 3


def test_cancel_requested_writes_nothing():
    assert event_to_status_patch(ev("cancel_requested")) is None


def test_fold_merges_one_job_into_one_patch_in_order():
    """queued + running + progress of one job in a batch become one Running patch."""
    updates = fold_events(
        [ev("queued"), ev("running", worker="w", attempt="1"), ev("progress", step="2", total="4")]
    )
    u = updates["j1"]
    assert u.patch["phase"] == "Running" and u.patch["queuedAt"] and u.patch["progressText"] == "2/4"
    assert [e.type for e in u.transitions] == [EventType.QUEUED, EventType.RUNNING]
    assert not u.progress_only


def test_record_of_a_dead_lettered_job_gives_failed_with_its_reason():
    """A record that failed past maxAttempts yields Failed, its reason and the attempt count;
    a record still running yields nothing."""
    base = {"id": "j", "tier": "free", "spec": "{}", "enqueued_at": "1", "max_attempts": "2"}
    failed = JobRecord.from_hash(
        {
            **base,
            "state": "failed",
            "attempts": "2",
            "reason": "WorkerLost",
            "message": "lease expired",
            "finished_at": "1700000000000",
            "worker": "w2",
        }
    )
    patch = record_to_status_patch(failed)
    assert patch["phase"] == "Failed" and patch["reason"] == "WorkerLost" and patch["attempts"] == 2
    assert patch["finishedAt"] == "2023-11-14T22:13:20Z" and "result" not in patch
    assert record_to_status_patch(JobRecord.from_hash({**base, "state": "running"})) is None


def test_resumed_and_warning_events_reach_status_and_kubernetes_events():
    """A resumed job shows where it continued and the steps saved (a Normal Event); a refused
    checkpoint shows its message (a Warning Event); both validate against the status model."""
    resumed = ev("resumed", step="20", total="50", steps_saved="20")
    warning = ev("warning", reason="CheckpointRefused", message="checkpoint refused, starting from step 0: x")
    assert event_to_status_patch(resumed) == {"resumedFromStep": 20, "stepsSaved": 20}
    assert event_to_status_patch(warning) == {"message": "checkpoint refused, starting from step 0: x"}
    update = fold_events([resumed, warning])["j1"]
    GenerationJobStatus.model_validate(update.patch)
    assert [e.type for e in update.transitions] == [EventType.RESUMED, EventType.WARNING]
    assert event_message(resumed) == "resumed from step 20/50 (20 steps saved in all)"
    assert EVENT_REASONS[EventType.WARNING] == ("Warning", True)


def _record(state: str, **fields: str) -> JobRecord:
    base = {"id": "j", "tier": "free", "spec": "{}", "enqueued_at": "1", "max_attempts": "2"}
    return JobRecord.from_hash({**base, "state": state, "finished_at": "1700000000000", **fields})


def _valid(patch: dict) -> GenerationJobStatus:
    """The CRD's status schema (generated from GenerationJobStatus) accepts the patch's values."""
    return GenerationJobStatus.model_validate({k: v for k, v in patch.items() if v is not None})


def test_every_patch_validates_against_the_status_model():
    """Including a final record that carries no reason: its reason must be one the CRD's enum
    allows (the API server refuses the whole patch otherwise)."""
    patches = [
        event_to_status_patch(ev("queued")),
        event_to_status_patch(ev("running", worker="w", attempt="1")),
        event_to_status_patch(ev("retrying", reason="OutOfMemory", attempt="1", delay_ms="500")),
        event_to_status_patch(ev("succeeded", result=json.dumps(RESULT))),
        event_to_status_patch(ev("failed", reason="Timeout", attempt="2")),
        event_to_status_patch(ev("cancelled")),
        record_to_status_patch(_record("failed", attempts="1")),
        record_to_status_patch(_record("cancelled")),
        record_to_status_patch(_record("succeeded", result=json.dumps(RESULT))),
    ]
    for patch in patches:
        assert patch is not None
        _valid(patch)


def test_phase_patches_carry_a_succeeded_condition_for_kubectl_wait():
    """`kubectl wait --for=condition=Succeeded` works: Unknown while the job waits or runs,
    True when it succeeded, False (with the reason) when it failed or was cancelled."""

    def succeeded(patch: dict | None) -> tuple[str, str | None]:
        assert patch is not None
        (condition,) = [c for c in _valid(patch).conditions or [] if c.type == "Succeeded"]
        assert condition.last_transition_time
        return condition.status, condition.reason

    assert succeeded(event_to_status_patch(ev("queued"))) == ("Unknown", "Queued")
    assert succeeded(event_to_status_patch(ev("running", worker="w", attempt="1"))) == ("Unknown", "Running")
    assert succeeded(event_to_status_patch(ev("succeeded", result=json.dumps(RESULT)))) == (
        "True",
        "Completed",
    )
    assert succeeded(event_to_status_patch(ev("failed", reason="Timeout"))) == ("False", "Timeout")
    assert succeeded(event_to_status_patch(ev("cancelled"))) == ("False", "Cancelled")
    assert succeeded(record_to_status_patch(_record("failed", attempts="1"))) == ("False", "GenerationError")
    assert "conditions" not in event_to_status_patch(ev("progress", step="1", total="2"))
