"""How a held job ends: the one place that writes a job's outcome to the queue.

Every ending goes through `JobOutcomes`, which also counts it in the metrics and feeds the
circuit breaker. Failures that say something about this worker (GenerationError,
OutOfMemory, and a configured model whose weights do not load) count towards the breaker;
failures that are the job's own (InvalidSpec, an unknown model, Timeout) and cancellation
do not. A success closes the breaker's count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

import structlog

from genjob.jobspec import GenerationJobSpec, JobResult, Reason
from genjob.queue import Checkpointed, ClaimedJob, JobQueue, JobState
from genjob.result_store import ResultStore
from genjob.settings import WorkerSettings
from genjob_worker.checkpoint import Checkpoint
from genjob_worker.checkpointer import Checkpointer
from genjob_worker.generate import GenerationOutput
from genjob_worker.memory import CircuitBreaker
from genjob_worker.metrics import WorkerMetrics
from genjob_worker.results import put_image

log = structlog.get_logger()

WORKER_FAULTS = {Reason.GENERATION_ERROR, Reason.OUT_OF_MEMORY}


class Ending(StrEnum):
    """How a held job left this worker (the `outcome` label of the jobs metric; its `reason`
    label carries the failure or requeue reason)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"
    LEASE_LOST = "lease_lost"


@dataclass
class HeldJob:
    """A claimed job while this worker holds it."""

    job: ClaimedJob
    spec: GenerationJobSpec | None  # None when the spec did not validate
    model: str
    seed: int
    deadline: float  # time.monotonic() past which the attempt times out
    cancel_seen: bool = False  # set by a heartbeat or progress report
    lease_lost: bool = False  # set by a heartbeat or progress report
    resume: Checkpoint | None = None  # the checkpoint this attempt continues from
    checkpoint: Checkpointed | None = None  # the latest one this attempt wrote (heartbeats carry it)
    ending: Ending | None = None
    reason: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.ending is None

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def tenant(self) -> str:
        """Who the job runs for (the queue meta the gateway or operator set; '' when none)."""
        return str(self.job.meta.get("tenant") or "")


class JobOutcomes:
    """Finishes held jobs in the queue, with metrics and the circuit breaker."""

    def __init__(
        self,
        queue: JobQueue,
        store: ResultStore,
        metrics: WorkerMetrics,
        breaker: CircuitBreaker,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.queue = queue
        self.store = store
        self.metrics = metrics
        self.breaker = breaker
        self.checkpointer = checkpointer or Checkpointer(store, WorkerSettings())

    def _drop_checkpoints(self, held: HeldJob) -> None:
        """A job that ended for good needs its checkpoints no more."""
        if held.job.checkpoint or held.checkpoint is not None:
            self.checkpointer.delete(held.id)

    def _ended(self, held: HeldJob, ending: Ending, reason: str | None = None) -> None:
        held.ending, held.reason = ending, reason
        self.metrics.jobs.labels(held.job.tier, held.model, ending.value, reason or "").inc()
        self.metrics.consecutive_failures.set(self.breaker.consecutive_failures)
        self.metrics.circuit_open.set(1 if self.breaker.is_open else 0)

    def succeeded(self, held: HeldJob, output: GenerationOutput) -> None:
        """Store the images and complete the job."""
        started = time.perf_counter()
        images = [put_image(self.store, image, held.tenant) for image in output.images]
        result = JobResult(images=images, seed=output.seed, model=held.model, downscaled=output.downscaled)
        finish = self.queue.complete(held.job, result.to_wire(), gpu_seconds=output.pipeline_seconds)
        self.breaker.record_success()
        self.metrics.generation_seconds.labels(held.model).observe(output.pipeline_seconds)
        if output.resumed_from_step:
            ran = max(1, _total_steps(held) - output.resumed_from_step)
            saved = output.resumed_from_step * output.pipeline_seconds / ran
            self.metrics.resume_saved_seconds.labels(held.model).inc(saved)
        self._drop_checkpoints(held)
        self._ended(held, Ending.SUCCEEDED if finish.applied else Ending.LEASE_LOST)
        log.info(
            "job succeeded" if finish.applied else "job finished elsewhere; result not recorded",
            job_id=held.id,
            seed=output.seed,
            images=len(images),
            pipeline_seconds=round(output.pipeline_seconds, 3),
            store_seconds=round(time.perf_counter() - started, 3),
            downscaled=output.downscaled,
        )

    def failed(
        self, held: HeldJob, reason: Reason, message: str, *, retryable: bool, gpu_seconds: float = 0.0
    ) -> None:
        finish = self.queue.fail(
            held.job, reason.value, message, retryable=retryable, gpu_seconds=gpu_seconds
        )
        if reason in WORKER_FAULTS or held.extra.get("worker_fault"):
            self.breaker.record_failure()
        if finish.state != JobState.DELAYED:  # a retry resumes from the checkpoint
            self._drop_checkpoints(held)
        self._ended(held, Ending.FAILED, reason.value)
        log.warning(
            "job failed",
            job_id=held.id,
            reason=reason.value,
            retryable=retryable,
            state=finish.state.value if finish.state else None,
            message=message[:500],
        )

    def cancelled(self, held: HeldJob, gpu_seconds: float = 0.0) -> None:
        self.queue.acknowledge_cancel(held.job, gpu_seconds=gpu_seconds)
        self._drop_checkpoints(held)
        self._ended(held, Ending.CANCELLED, Reason.CANCELLED.value)
        log.info("job cancelled while running", job_id=held.id)

    def preempted(
        self, held: HeldJob, message: str, gpu_seconds: float = 0.0, checkpoint: Checkpointed | None = None
    ) -> None:
        """Give the job back to the head of its queue (with the checkpoint to resume from, when
        one was written); the attempt does not count."""
        checkpoint = checkpoint or held.checkpoint
        finish = self.queue.requeue(
            held.job, Reason.PREEMPTED.value, message, gpu_seconds=gpu_seconds, checkpoint=checkpoint
        )
        if finish.state == JobState.CANCELLED:
            self._drop_checkpoints(held)
        self._ended(held, Ending.PREEMPTED, Reason.PREEMPTED.value)
        log.warning(
            "job preempted and given back",
            job_id=held.id,
            applied=finish.applied,
            state=finish.state.value if finish.state else None,  # cancelled if a cancel was asked
            message=message,
        )

    def lease_lost(self, held: HeldJob) -> None:
        """Drop the job without writing: another worker may hold it now."""
        self._ended(held, Ending.LEASE_LOST)
        log.warning("lease lost; dropping the job", job_id=held.id)


def _total_steps(held: HeldJob) -> int:
    return held.resume.snapshot.total if held.resume is not None else 0
