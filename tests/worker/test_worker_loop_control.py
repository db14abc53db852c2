"""The worker loop in-process while a job runs: cancellation, deadline, lost lease, drain and the
circuit breaker (real redis-server, real tiny pipeline; long jobs are many steps, no timings)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis

from genjob.jobspec import GenerationJobSpec
from genjob.queue import CancelOutcome, JobState
from genjob.settings import GenjobSettings
from genjob_worker.generate import GenerationOutput, StepCallback
from genjob_worker.models import ModelRegistry
from tests.support.worker_harness import InProcessWorker, enqueue_job, wait_for_job

LONG = {"steps": 400}  # ~ seconds on the tiny model at 64x64


@pytest.fixture
def loop_settings(make_loop_settings: Callable[..., GenjobSettings]) -> GenjobSettings:
    return make_loop_settings(
        heartbeat_interval_seconds=0.1,
        progress_interval_seconds=0.05,
        max_consecutive_failures=2,
    )


def test_cancel_while_running_stops_at_a_step(loop_settings: GenjobSettings, registry: ModelRegistry) -> None:
    """Ensures a cancel request stops the running job at a step boundary and ends it cancelled."""
    worker = InProcessWorker(loop_settings, registry).start()
    try:
        enqueue_job(worker.queue, "c1", **LONG)
        wait_for_job(worker.queue, "c1", {JobState.RUNNING}, min_progress=1)
        assert worker.queue.cancel("c1") == CancelOutcome.CANCEL_REQUESTED
        record = wait_for_job(worker.queue, "c1", timeout=60)
    finally:
        worker.stop()
    assert record.state == JobState.CANCELLED and record.result is None
    assert record.progress_step is not None and record.progress_step < 400
    assert worker.count("cancelled") == 1


class SlowSteps:
    """The real runtime under a fake clock that advances `seconds_per_step` at every step, so a
    job's deadline passes after a known number of steps whatever the machine's speed."""

    def __init__(self, inner: Any, seconds_per_step: float) -> None:
        self.inner = inner
        self.seconds_per_step = seconds_per_step
        self.now = 1000.0
        self.steps_run = 0

    def clock(self) -> float:
        return self.now

    def generate(
        self,
        specs: Sequence[GenerationJobSpec],
        *,
        model_name: str,
        seeds: Sequence[int],
        on_step: StepCallback,
        **options: Any,
    ) -> list[GenerationOutput]:
        def slow_step(step: int, total: int) -> None:
            self.now += self.seconds_per_step
            self.steps_run = step
            on_step(step, total)

        return self.inner.generate(specs, model_name=model_name, seeds=seeds, on_step=slow_step, **options)


def test_deadline_fails_with_timeout_not_retried(
    loop_settings: GenjobSettings, registry: ModelRegistry
) -> None:
    """Ensures a job past its timeoutSeconds is stopped at the next step and fails with Timeout,
    with no retry (steps take 0.4 s of fake time: a 1 s deadline passes at step 3 of 50)."""
    slow = SlowSteps(InProcessWorker(loop_settings, registry).generator, seconds_per_step=0.4)
    worker = InProcessWorker(loop_settings, registry, generator=slow)
    worker.loop.clock = slow.clock
    enqueue_job(worker.queue, "t1", timeout_seconds=1, max_attempts=3, steps=50)
    worker.loop.claim_and_run()
    record = worker.queue.get("t1")
    assert record is not None and record.state == JobState.FAILED
    assert record.reason == "Timeout" and "step 3/50" in (record.message or "")
    assert slow.steps_run == 3  # the pipeline stopped at that step boundary
    assert worker.queue.dead_letters("free") == ["t1"]


def test_lost_lease_drops_the_job_without_writing(
    loop_settings: GenjobSettings, registry: ModelRegistry, redis_client: redis.Redis
) -> None:
    """Ensures a worker whose lease was reaped stops and never overwrites the requeued job."""
    worker = InProcessWorker(loop_settings, registry)
    enqueue_job(worker.queue, "l1", **LONG)
    jobs = worker.queue.claim(["free"], worker.name)
    runner = threading.Thread(target=worker.loop.run_claimed, args=(jobs,))
    runner.start()
    wait_for_job(worker.queue, "l1", {JobState.RUNNING}, min_progress=1)
    redis_client.zadd(worker.queue.keys.inflight("free"), {"l1": 0})  # the lease expires now
    assert worker.queue.reap().requeued == 1
    runner.join(60)
    assert not runner.is_alive()
    record = worker.queue.get("l1")
    assert record is not None and record.state == JobState.QUEUED and record.attempts == 1
    assert worker.count("lease_lost") == 1


def test_drain_requeues_a_job_that_does_not_fit(
    loop_settings: GenjobSettings, registry: ModelRegistry
) -> None:
    """Ensures draining with no grace left stops the job at a step and requeues it, attempts unchanged."""
    settings = loop_settings.model_copy(
        update={"worker": loop_settings.worker.model_copy(update={"drain_grace_seconds": 0.5})}
    )
    worker = InProcessWorker(settings, registry).start()
    enqueue_job(worker.queue, "d1", **LONG)
    wait_for_job(worker.queue, "d1", {JobState.RUNNING}, min_progress=1)
    worker.stop()
    record = worker.queue.get("d1")
    assert record is not None and record.state == JobState.QUEUED
    assert record.reason == "Preempted" and record.attempts == 0
    assert worker.queue.client.lindex(worker.queue.keys.pending("free"), 0) == "d1"


class BrokenGenerator:
    """A runtime that fails every call (a sick GPU)."""

    def generate(
        self,
        specs: Sequence[GenerationJobSpec],
        *,
        model_name: str,
        seeds: Sequence[int],
        on_step: StepCallback,
        **options: Any,
    ) -> list[GenerationOutput]:
        raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")


class StopWhenCircuitOpens:
    """A pod marker that ends the test's loop (drain) when the loop goes idle with the breaker open,
    i.e. when it enters its circuit-open wait instead of claiming."""

    def __init__(self, worker: InProcessWorker) -> None:
        self.worker = worker
        self.circuit_waits = 0

    def set_busy(self, busy: bool) -> None:
        if not busy and self.worker.breaker.is_open and not self.worker.drain.draining:
            self.circuit_waits += 1
            self.worker.drain.request()


def test_circuit_breaker_opens_after_consecutive_failures(
    loop_settings: GenjobSettings, registry: ModelRegistry
) -> None:
    """Ensures N consecutive worker faults open the breaker: not ready, not alive, no more claims."""
    worker = InProcessWorker(loop_settings, registry, generator=BrokenGenerator())
    marker = StopWhenCircuitOpens(worker)
    worker.loop.pod_marker = marker
    for i in range(3):
        enqueue_job(worker.queue, f"f{i}", max_attempts=1)
    safety = threading.Timer(60, worker.drain.request)  # a loop that never opens fails, not hangs
    safety.start()
    try:
        worker.loop.run()  # returns once the marker drains the worker from the circuit-open wait
    finally:
        safety.cancel()
    assert worker.breaker.is_open and marker.circuit_waits == 1
    states: list[Any] = [r.state if r else None for r in worker.queue.get_many(["f0", "f1", "f2"])]
    assert states == [JobState.FAILED, JobState.FAILED, JobState.QUEUED]
    assert worker.queue.get("f0").reason == "GenerationError"
    assert any("circuit breaker" in r for r in worker.health.not_ready_reasons())
    assert not worker.health.alive()
    assert worker.metrics.registry.get_sample_value("genjob_worker_circuit_open") == 1


class LeakyGenerator:
    """A runtime whose failure text carries a filesystem path and internals."""

    def generate(self, specs: Sequence[GenerationJobSpec], **_kwargs: Any) -> list[GenerationOutput]:
        raise OSError("[Errno 28] No space left on device: '/var/lib/genjob/cache/secret-model/unet.bin'")


def test_job_messages_carry_no_exception_text_or_paths(
    loop_settings: GenjobSettings, registry: ModelRegistry
) -> None:
    """A tenant reads its job's message: an unexpected failure shows a stable message and the
    exception goes to the worker's log only."""
    worker = InProcessWorker(loop_settings, registry, generator=LeakyGenerator())
    enqueue_job(worker.queue, "leak", max_attempts=1)
    worker.loop.claim_and_run()
    record = worker.queue.get("leak")
    assert record is not None and record.reason == "GenerationError"
    message = record.message or ""
    assert message and "/var/lib" not in message and "Errno" not in message and "OSError" not in message


def test_success_resets_the_failure_count(loop_settings: GenjobSettings, registry: ModelRegistry) -> None:
    """Ensures failures that are the job's own (unknown model) do not count, and a success resets."""
    worker = InProcessWorker(loop_settings, registry)
    worker.breaker.record_failure()
    enqueue_job(worker.queue, "ok")
    worker.loop.claim_and_run()
    assert worker.breaker.consecutive_failures == 0


def test_the_pod_is_marked_idle_before_the_worker_waits_for_work(
    loop_settings: GenjobSettings, registry: ModelRegistry
) -> None:
    """A pod still marked busy after its last job is one a scale-in must not pick, yet it is
    idle: the mark goes the moment a claim finds nothing, not after the blocking wait (the
    autoscaling burst saw the ReplicaSet stop a worker 0.7 s after its last job, still marked)."""
    calls: list[tuple[str, Any]] = []

    class RecordingMarker:
        def set_busy(self, busy: bool) -> None:
            calls.append(("busy", busy))

    worker = InProcessWorker(loop_settings, registry, pod_marker=RecordingMarker())
    claim = worker.queue.claim

    def recording_claim(*args: Any, **kwargs: Any) -> Any:
        calls.append(("claim", kwargs.get("block_seconds", 0.0)))
        return claim(*args, **kwargs)

    worker.queue.claim = recording_claim
    enqueue_job(worker.queue, "last", max_attempts=1)
    assert worker.loop.claim_and_run() == 1
    assert ("busy", True) in calls
    del calls[:]
    assert worker.loop.claim_and_run() == 0
    first_wait = next(i for i, (what, value) in enumerate(calls) if what == "claim" and value > 0)
    assert ("busy", False) in calls[:first_wait], calls
