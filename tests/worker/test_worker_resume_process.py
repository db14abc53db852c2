"""End to end with real worker processes: a long job whose worker goes away mid-way finishes on
another worker, resumed from its checkpoint, with the image of an uninterrupted run.

- SIGTERM with a grace period the job cannot fit (what a pod deletion or a Spot notice
  sends): the worker checkpoints at a step boundary and requeues the job.
- SIGKILL (no notice) with periodic checkpoints on: the lease expires, `reap()` requeues the
  job, and the next worker resumes from the last periodic checkpoint its heartbeats reported.

(The test cluster's pod runner is not used: these are plain processes against a real
redis-server, which is all the behaviour needs.)
"""

from __future__ import annotations

import signal
import time

from genjob.queue import JobQueue, JobState
from tests.support.worker_harness import StartWorker, enqueue_job, wait_for_job

JOB = {"steps": 300, "seed": 99, "prompt": "a harbour in fog"}


def _reference_sha(queue: JobQueue) -> str:
    enqueue_job(queue, "reference", **JOB)
    record = wait_for_job(queue, "reference", timeout=300)
    assert record.state == JobState.SUCCEEDED and record.result
    return str(record.result["images"][0]["sha256"])


def test_sigterm_mid_job_resumes_on_another_worker_with_the_same_image(
    queue: JobQueue, start_worker: StartWorker
) -> None:
    victim = start_worker(drain_grace_seconds=0.5)
    enqueue_job(queue, "e1", **JOB)
    wait_for_job(queue, "e1", {JobState.RUNNING}, min_progress=20)
    victim.signal(signal.SIGTERM)
    assert victim.wait(60) == 0
    requeued = queue.get("e1")
    assert requeued is not None and requeued.state == JobState.QUEUED and requeued.checkpoint
    assert requeued.checkpoint_step is not None and requeued.checkpoint_step >= 20

    start_worker()
    done = wait_for_job(queue, "e1", timeout=300)
    assert done.state == JobState.SUCCEEDED and done.result and done.attempts == 0
    assert done.resumed_from_step == requeued.checkpoint_step
    assert done.result["images"][0]["sha256"] == _reference_sha(queue)


def test_sigkill_with_periodic_checkpoints_resumes_after_the_lease_expires(
    queue: JobQueue, start_worker: StartWorker
) -> None:
    periodic = {"checkpoint_interval_seconds": 0.3, "checkpoint_min_job_seconds": 0}
    victim = start_worker(queue={"lease_seconds": 2}, **periodic)
    enqueue_job(queue, "e2", **JOB)
    deadline = time.monotonic() + 120
    record = queue.get("e2")
    while not (record and record.checkpoint_step and record.checkpoint_step >= 20):
        assert time.monotonic() < deadline, f"no periodic checkpoint reported: {record}"
        time.sleep(0.05)
        record = queue.get("e2")
    victim.signal(signal.SIGKILL)
    assert victim.wait(30) == -signal.SIGKILL
    last = queue.get("e2")
    assert last is not None and last.checkpoint_step is not None
    while queue.reap().requeued == 0:
        assert time.monotonic() < deadline + 60, "the lease never expired"
        time.sleep(0.2)

    start_worker(queue={"lease_seconds": 2}, **periodic)
    done = wait_for_job(queue, "e2", timeout=300)
    assert done.state == JobState.SUCCEEDED and done.result and done.attempts == 1
    assert done.resumed_from_step == last.checkpoint_step
    assert done.result["images"][0]["sha256"] == _reference_sha(queue)
