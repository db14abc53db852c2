"""The step guard between denoising steps, with a fake clock and a real redis-server: progress
throttling, cancellation, deadline and drain decisions (no pipeline runs)."""

from __future__ import annotations

import pytest

from genjob.admission import new_job
from genjob.jobspec import GenerationJobSpec, Reason
from genjob.queue import EventType, JobQueue, JobState, read_history
from genjob.result_store import FilesystemResultStore
from genjob_worker.drain import DrainController
from genjob_worker.generate import StopGeneration
from genjob_worker.guard import LeaseKeeper, StepGuard
from genjob_worker.memory import CircuitBreaker
from genjob_worker.metrics import WorkerMetrics
from genjob_worker.outcomes import HeldJob, JobOutcomes

WORKER = "guard-test"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hold(queue: JobQueue, job_id: str, clock: FakeClock, timeout: float = 600) -> HeldJob:
    spec = GenerationJobSpec(tier="free", model="tiny", prompt="p", width=64, height=64, steps=10)
    queue.enqueue(new_job(job_id, spec))
    [job] = queue.claim(["free"], WORKER)
    return HeldJob(job=job, spec=spec, model="tiny", seed=1, deadline=clock.now + timeout)


def make_guard(
    queue: JobQueue, jobs: list[HeldJob], clock: FakeClock, tmp_path, drain: DrainController | None = None
) -> StepGuard:
    outcomes = JobOutcomes(queue, FilesystemResultStore(tmp_path), WorkerMetrics(), CircuitBreaker(3))
    drain = drain or DrainController(60, clock=clock)
    return StepGuard(queue, WORKER, jobs, outcomes, drain, progress_interval_seconds=1.0, clock=clock)


def progress_steps(queue: JobQueue, job_id: str) -> list[int]:
    return [
        e.int_field("step") or 0
        for e in read_history(queue.client, queue.keys)
        if e.job_id == job_id and e.type == EventType.PROGRESS
    ]


def test_progress_is_throttled_but_the_last_step_is_always_reported(job_queue: JobQueue, tmp_path) -> None:
    """Ensures progress goes to Redis at most once per progress interval, and always at the end."""
    clock = FakeClock()
    held = hold(job_queue, "p1", clock)
    guard = make_guard(job_queue, [held], clock, tmp_path)
    for step in range(1, 11):
        clock.now += 0.3
        guard.on_step(step, 10)
    # first step reports; then every >= 1.0 s of fake time (4 steps of 0.3 s); the last step always
    assert progress_steps(job_queue, "p1") == [1, 5, 9, 10]
    record = job_queue.get("p1")
    assert record is not None and (record.progress_step, record.progress_total) == (10, 10)
    assert held.active


def test_cancel_request_ends_the_job_and_stops_the_call(job_queue: JobQueue, tmp_path) -> None:
    """Ensures a cancel seen by a heartbeat cancels the job at the next step and stops the pipeline."""
    clock = FakeClock()
    held = hold(job_queue, "c1", clock)
    guard = make_guard(job_queue, [held], clock, tmp_path)
    guard.on_step(1, 10)
    job_queue.cancel("c1")
    LeaseKeeper(job_queue, WORKER, [held], interval_seconds=1).beat()
    assert held.cancel_seen
    with pytest.raises(StopGeneration) as info:
        guard.on_step(2, 10)
    assert info.value.reason == Reason.CANCELLED
    record = job_queue.get("c1")
    assert record is not None and record.state == JobState.CANCELLED


def test_deadline_fails_with_timeout(job_queue: JobQueue, tmp_path) -> None:
    """Ensures a step after the job's deadline fails it with Timeout (final) and stops the call."""
    clock = FakeClock()
    held = hold(job_queue, "t1", clock, timeout=5)
    guard = make_guard(job_queue, [held], clock, tmp_path)
    guard.on_step(1, 10)
    clock.now += 6
    with pytest.raises(StopGeneration) as info:
        guard.on_step(2, 10)
    assert info.value.reason == Reason.TIMEOUT
    record = job_queue.get("t1")
    assert record is not None and record.state == JobState.FAILED and record.reason == "Timeout"


def test_in_a_batch_a_cancelled_job_ends_and_the_others_continue(job_queue: JobQueue, tmp_path) -> None:
    """Ensures cancelling one job of a batched call does not stop the call for the others."""
    clock = FakeClock()
    a, b = hold(job_queue, "a", clock), hold(job_queue, "b", clock)
    guard = make_guard(job_queue, [a, b], clock, tmp_path)
    a.cancel_seen = True
    guard.on_step(1, 10)  # no StopGeneration: b is still active
    assert not a.active and b.active
    assert [h.id for h in guard.active()] == ["b"]


@pytest.mark.parametrize(("grace", "preempted"), [(600.0, False), (2.0, True)])
def test_drain_finishes_what_fits_and_requeues_what_does_not(
    job_queue: JobQueue, tmp_path, grace: float, preempted: bool
) -> None:
    """Ensures that while draining, a job whose estimated rest fits the grace keeps running, and
    one that does not is requeued at the head with Preempted, its attempt not counted."""
    clock = FakeClock()
    held = hold(job_queue, "d1", clock)
    drain = DrainController(grace, clock=clock)
    guard = make_guard(job_queue, [held], clock, tmp_path, drain)
    clock.now += 1.0  # 1 s per step: 8 steps left need ~10.6 s
    guard.on_step(1, 10)
    drain.request()
    clock.now += 1.0
    if not preempted:
        guard.on_step(2, 10)
        assert held.active
        return
    with pytest.raises(StopGeneration) as info:
        guard.on_step(2, 10)
    assert info.value.reason == Reason.PREEMPTED
    record = job_queue.get("d1")
    assert record is not None and record.state == JobState.QUEUED
    assert record.reason == "Preempted" and record.attempts == 0
