"""The worker as a real process (`python -m genjob.cli worker`): probes, SIGTERM drain, kill -9.

Each test starts real worker processes against a real redis-server and the tiny model.
"Long" jobs are many denoising steps; nothing asserts a timing.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from genjob.queue import JobQueue, JobState
from tests.support.worker_harness import StartWorker, enqueue_job, wait_for_job

LONG = {"steps": 400}  # seconds on the tiny model; still running when the signal comes


def test_worker_process_serves_probes_and_finishes_a_job_that_fits_on_sigterm(
    queue: JobQueue, start_worker: StartWorker
) -> None:
    """Ensures a started worker is alive and ready, completes a job and counts it in /metrics; and
    that SIGTERM during a job that fits the grace period lets it finish, then exits 0."""
    worker = start_worker(drain_grace_seconds=120)
    assert worker.get("/healthz")[0] == 200
    enqueue_job(queue, "p1", seed=5)
    record = wait_for_job(queue, "p1")
    assert record.state == JobState.SUCCEEDED and record.worker and record.result
    status, text = worker.get("/metrics")
    assert status == 200 and 'outcome="succeeded"' in text
    # The first job of a fresh worker ran cold: its start-up is on the record and in the metrics.
    assert record.cold_start is not None and record.cold_start.model_load_seconds > 0
    assert record.cold_start.process_started_at_ms <= record.cold_start.ready_at_ms <= record.started_at_ms
    assert 'genjob_job_wait_seconds_count{cold="true",tier="free"} 1.0' in text
    assert 'genjob_worker_model_load_seconds_count{model="tiny"} 1.0' in text
    enqueue_job(queue, "fits", steps=150)
    wait_for_job(queue, "fits", {JobState.RUNNING}, min_progress=1)
    worker.signal(signal.SIGTERM)
    assert worker.wait(120) == 0
    record = wait_for_job(queue, "fits", timeout=5)
    assert record.state == JobState.SUCCEEDED and record.attempts == 0
    assert record.cold_start is None  # the worker's second job ran warm


def test_worker_is_never_ready_when_the_default_model_does_not_load(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    """Ensures readiness needs the default model: a missing model folder means exit 3, never ready."""
    worker = start_worker(model_dir=tmp_path / "missing", ready=False)
    assert worker.wait(120) == 3
    assert "cannot load a model" in worker.log_tail()


def test_sigterm_with_a_long_job_requeues_it_for_another_worker(
    queue: JobQueue, start_worker: StartWorker
) -> None:
    """Ensures SIGTERM during a job that does not fit the grace stops it at a step, requeues it at the
    head with Preempted (attempts unchanged), exits 0, and another worker process finishes it."""
    first = start_worker(drain_grace_seconds=0.5)  # less than any estimate: never fits
    enqueue_job(queue, "long", **LONG)
    wait_for_job(queue, "long", {JobState.RUNNING}, min_progress=1)
    first.signal(signal.SIGTERM)
    assert first.wait(60) == 0
    record = queue.get("long")
    assert record is not None and record.state == JobState.QUEUED
    assert record.reason == "Preempted" and record.attempts == 0
    assert (record.progress_step or 0) < LONG["steps"]
    second = start_worker()
    record = wait_for_job(queue, "long", timeout=300)
    assert record.state == JobState.SUCCEEDED and record.attempts == 0
    second.signal(signal.SIGTERM)  # idle now: exits 0 at its next claim timeout
    assert second.wait(60) == 0


def test_kill_9_holding_a_job_is_reaped_and_finished_elsewhere(
    queue: JobQueue, start_worker: StartWorker
) -> None:
    """Ensures a job whose worker is SIGKILLed is requeued by reap() once the lease expires
    (attempts+1) and finished by another worker process."""
    lease = {"lease_seconds": 2}
    victim = start_worker(queue=lease)
    enqueue_job(queue, "orphan", **LONG)
    wait_for_job(queue, "orphan", {JobState.RUNNING}, min_progress=1)
    victim.signal(signal.SIGKILL)
    assert victim.wait(30) == -signal.SIGKILL
    reaped = 0
    for _ in range(100):  # the lease runs out within ~2 s
        reaped += queue.reap().requeued
        if reaped:
            break
        time.sleep(0.1)
    assert reaped == 1
    record = queue.get("orphan")
    assert record is not None and record.state == JobState.QUEUED and record.attempts == 1
    start_worker(queue=lease)
    record = wait_for_job(queue, "orphan", timeout=300)
    assert record.state == JobState.SUCCEEDED and record.attempts == 1


def test_once_with_command_line_overrides(queue: JobQueue, start_worker: StartWorker) -> None:
    """Ensures `genjob worker --once --tiers pro --batch-size 2` serves tier pro only, runs one
    claim of two compatible jobs, and exits 0."""
    enqueue_job(queue, "free-job")
    enqueue_job(queue, "pro-1", tier="pro")  # queued before the start: one claim finds both
    enqueue_job(queue, "pro-2", tier="pro")
    worker = start_worker(args=("--once", "--tiers", "pro", "--batch-size", "2"), ready=False)
    assert worker.wait(120) == 0
    records = queue.get_many(["pro-1", "pro-2", "free-job"])
    assert [r.state if r else None for r in records] == [
        JobState.SUCCEEDED,
        JobState.SUCCEEDED,
        JobState.QUEUED,
    ]
    pro_1, pro_2 = records[0], records[1]
    assert pro_1 and pro_2 and pro_1.started_at_ms == pro_2.started_at_ms  # one claim, one batch
