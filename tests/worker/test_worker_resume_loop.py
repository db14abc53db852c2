"""Resuming preempted jobs through the worker loop (in-process workers, real redis-server).

A drained worker checkpoints its job and requeues it with the reference; the next worker
resumes from that step and stores the same image as an uninterrupted run (content-addressed:
same sha256). A checkpoint that is corrupted, or whose job's spec changed, is refused with a
warning event and the job starts over, still producing the right image. Checkpoints are
deleted once the job ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from genjob.queue import EventType, JobState, read_history
from genjob.settings import GenjobSettings
from genjob_worker.models import ModelRegistry
from tests.support.worker_harness import InProcessWorker, enqueue_job, wait_for_job

JOB = {"steps": 60, "seed": 7, "prompt": "a lighthouse at dusk"}


@pytest.fixture
def loop_settings(make_loop_settings: Callable[..., GenjobSettings]) -> GenjobSettings:
    return make_loop_settings(
        heartbeat_interval_seconds=0.1, progress_interval_seconds=0.05, drain_grace_seconds=0.2
    )


def _uninterrupted_sha(worker: InProcessWorker) -> str:
    enqueue_job(worker.queue, "reference", **JOB)
    record = wait_for_job(worker.queue, "reference")
    assert record.state == JobState.SUCCEEDED and record.result
    return str(record.result["images"][0]["sha256"])


def _preempt(settings: GenjobSettings, registry: ModelRegistry, job_id: str) -> InProcessWorker:
    """Run the job on a worker and drain it mid-way: the job is requeued with a checkpoint."""
    worker = InProcessWorker(settings, registry, name="worker-a").start()
    enqueue_job(worker.queue, job_id, **JOB)
    wait_for_job(worker.queue, job_id, {JobState.RUNNING}, min_progress=3)
    worker.stop()
    return worker


def test_a_drained_job_resumes_on_the_next_worker_with_the_same_image(
    loop_settings: GenjobSettings, registry: ModelRegistry
) -> None:
    first = _preempt(loop_settings, registry, "r1")
    record = first.queue.get("r1")
    assert record is not None and record.state == JobState.QUEUED and record.reason == "Preempted"
    assert record.checkpoint and record.checkpoint_step and 3 <= record.checkpoint_step < 60
    saved = record.checkpoint_step

    second = InProcessWorker(loop_settings, registry, name="worker-b").start()
    try:
        done = wait_for_job(second.queue, "r1")
        reference = _uninterrupted_sha(second)
    finally:
        second.stop()
    assert done.state == JobState.SUCCEEDED and done.result
    assert done.resumed_from_step == saved and done.steps_saved == saved and done.attempts == 0
    assert done.result["images"][0]["sha256"] == reference, "resumed image equals the uninterrupted one"
    resumed = [e for e in read_history(second.queue.client, second.queue.keys) if e.job_id == "r1"]
    assert any(e.type == EventType.RESUMED and e.fields["step"] == str(saved) for e in resumed)
    assert not (Path(loop_settings.results.path) / "checkpoints" / "r1").exists(), "deleted when done"


@pytest.mark.parametrize("damage", ["truncated", "spec_changed"])
def test_a_refused_checkpoint_restarts_from_step_0_with_a_warning(
    loop_settings: GenjobSettings, registry: ModelRegistry, damage: str
) -> None:
    first = _preempt(loop_settings, registry, "r2")
    record = first.queue.get("r2")
    assert record is not None and record.checkpoint
    if damage == "truncated":
        path = Path(record.checkpoint.removeprefix("file://"))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # the job was re-created with another prompt under the same id
        first.queue.client.hset(
            first.queue.keys.job("r2"), "spec", json.dumps({**record.spec, "prompt": "a barn"})
        )

    second = InProcessWorker(loop_settings, registry, name="worker-b").start()
    try:
        done = wait_for_job(second.queue, "r2")
        if damage == "truncated":
            reference = _uninterrupted_sha(second)
    finally:
        second.stop()
    assert done.state == JobState.SUCCEEDED and done.result
    assert done.resumed_from_step == 0 and done.steps_saved == 0
    warnings = [
        e.fields for e in read_history(second.queue.client, second.queue.keys)
        if e.job_id == "r2" and e.type == EventType.WARNING
    ]  # fmt: skip
    assert warnings and warnings[0]["reason"] == "CheckpointRefused"
    assert ("checksum" if damage == "truncated" else "spec changed") in warnings[0]["message"]
    if damage == "truncated":
        assert done.result["images"][0]["sha256"] == reference


def test_cancelling_a_preempted_job_while_queued_deletes_its_checkpoint(
    loop_settings: GenjobSettings, registry: ModelRegistry
) -> None:
    """The cancel comes from the operator or the gateway, which cannot write to the result store:
    the next worker that runs deletes the checkpoint."""
    first = _preempt(loop_settings, registry, "r3")
    record = first.queue.get("r3")
    assert record is not None and record.checkpoint
    checkpoints = Path(loop_settings.results.path) / "checkpoints" / "r3"
    assert checkpoints.is_dir()
    assert first.queue.cancel("r3").value == "cancelled"

    second = InProcessWorker(loop_settings, registry, name="worker-b").start()
    try:
        enqueue_job(second.queue, "after", steps=2)
        assert wait_for_job(second.queue, "after").state == JobState.SUCCEEDED
    finally:
        second.stop()
    assert not checkpoints.exists(), "the cancelled job's checkpoint was deleted"
    assert second.queue.orphaned_checkpoints() == []
    cancelled = second.queue.get("r3")
    assert cancelled is not None and cancelled.state == JobState.CANCELLED and cancelled.checkpoint is None
