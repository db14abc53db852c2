"""Control of running jobs between steps: leases, progress, cancellation, deadline, preemption.

`LeaseKeeper` is a daemon thread that heartbeats every held job each
`heartbeat_interval_seconds` (also while no step runs: model loading, VAE decode, store).
It only sets flags on the `HeldJob`s; the queue writes that end a job happen on the loop's
thread, in `StepGuard.on_step`, the pipeline's step callback. At each step boundary the
guard, for each job of the pipeline call still active:
- drops it when its lease was lost (nothing is written: another worker may hold it);
- acknowledges a cancel request;
- fails it with Timeout (not retried) once its deadline has passed;
- reports progress at most every `progress_interval_seconds` (one round trip that also
  extends the lease and answers whether a cancel was requested);
and preempts every job of the call (requeue, reason Preempted) when the worker drains and
the rest of the call does not fit the remaining grace, with a checkpoint of each job written
first (`checkpointer.py`), so the next worker resumes from this step. Long jobs are also
checkpointed periodically (captured here, written on a background thread); heartbeats and
progress reports carry the latest reference. When no job of the call is left active it
raises `StopGeneration`, which stops the pipeline at this step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import structlog

from genjob.jobspec import Reason
from genjob.queue import Checkpointed, JobQueue
from genjob_worker.checkpointer import Checkpointer, CheckpointTarget
from genjob_worker.denoise_state import DenoiseSnapshot, StepTracker
from genjob_worker.drain import DrainController
from genjob_worker.generate import StopGeneration
from genjob_worker.outcomes import HeldJob, JobOutcomes

log = structlog.get_logger()


class LeaseKeeper:
    """Heartbeats held jobs from a daemon thread; use as a context manager around their run."""

    def __init__(
        self, queue: JobQueue, worker: str, jobs: Sequence[HeldJob], interval_seconds: float
    ) -> None:
        self.queue = queue
        self.worker = worker
        self.jobs = list(jobs)
        self.interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """One heartbeat of every active job (errors are logged; the next beat retries)."""
        for held in self.jobs:
            if not held.active or self._stop.is_set():
                continue
            try:
                touch = self.queue.heartbeat(held.job, self.worker, held.checkpoint)
            except Exception as exc:
                log.warning("heartbeat failed", job_id=held.id, error=str(exc)[:300])
                continue
            if held.active:
                held.lease_lost = held.lease_lost or not touch.lease_held
                held.cancel_seen = held.cancel_seen or touch.cancel_requested


class StepGuard:
    """The step callback of one pipeline call over `jobs` (see the module docstring)."""

    def __init__(
        self,
        queue: JobQueue,
        worker: str,
        jobs: Sequence[HeldJob],
        outcomes: JobOutcomes,
        drain: DrainController,
        progress_interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        checkpointer: Checkpointer | None = None,
        tracker: StepTracker | None = None,
    ) -> None:
        self.checkpointer = checkpointer
        self.tracker = tracker if tracker is not None else StepTracker()
        self.image_ranges: dict[str, tuple[int, int]] = {}  # job id -> (first image, count) in the call
        self.queue = queue
        self.worker = worker
        self.jobs = list(jobs)
        self.outcomes = outcomes
        self.drain = drain
        self.progress_interval = progress_interval_seconds
        self.clock = clock
        self.started = clock()
        self._last_report = float("-inf")
        self._last_checkpoint = self.started
        self.last_step = 0
        self.last_total = 0

    def elapsed(self) -> float:
        return self.clock() - self.started

    def gpu_share(self) -> float:
        """Each job's share of the call's time so far (for usage of jobs that end early)."""
        return self.elapsed() / max(1, len(self.jobs))

    def active(self) -> list[HeldJob]:
        return [held for held in self.jobs if held.active]

    def check_flags(self) -> None:
        """End jobs whose lease was lost, whose cancel was requested or whose deadline passed."""
        now = self.clock()
        for held in self.active():
            if held.lease_lost:
                self.outcomes.lease_lost(held)
            elif held.cancel_seen:
                self.outcomes.cancelled(held, gpu_seconds=self.gpu_share())
            elif now > held.deadline:
                self.outcomes.failed(
                    held,
                    Reason.TIMEOUT,
                    f"timeoutSeconds {held.job.spec.get('timeoutSeconds')} passed at step "
                    f"{self.last_step}/{self.last_total}",
                    retryable=False,
                    gpu_seconds=self.gpu_share(),
                )

    def report_progress(self, step: int, total: int) -> None:
        now = self.clock()
        if now - self._last_report < self.progress_interval and step < total:
            return
        self._last_report = now
        for held in self.active():
            touch = self.queue.report_progress(
                held.job, self.worker, min(step, total), total, held.checkpoint
            )
            held.lease_lost = held.lease_lost or not touch.lease_held
            held.cancel_seen = held.cancel_seen or touch.cancel_requested

    def _snapshots(self) -> list[tuple[CheckpointTarget, DenoiseSnapshot, HeldJob]]:
        """This step's state, one part per active job (raises when it cannot be captured)."""
        snapshot, fingerprint = self.tracker.capture(), self.tracker.fingerprint()
        parts = []
        for held in self.active():
            start, count = self.image_ranges.get(held.id, (0, snapshot.latents.shape[0]))
            target = CheckpointTarget(held.job, held.model, fingerprint, held.seed)
            parts.append((target, snapshot.images(start, count), held))
        return parts

    def _count(self, trigger: str, outcome: str) -> None:
        self.outcomes.metrics.checkpoints.labels(trigger, outcome).inc()

    def checkpoint_on_preempt(self) -> dict[str, Checkpointed]:
        """Write each active job's checkpoint now; the references by job id (none on failure)."""
        if self.checkpointer is None or not self.checkpointer.on_preempt:
            return {}
        written: dict[str, Checkpointed] = {}
        try:
            parts = self._snapshots()
        except Exception as exc:
            log.warning("cannot checkpoint this pipeline call", error=str(exc)[:300])
            return written
        for target, snapshot, held in parts:
            try:
                written[held.id] = self.checkpointer.write(target, snapshot)
                self._count("preempt", "written")
            except Exception as exc:
                self._count("preempt", "failed")
                log.warning("checkpoint on preemption failed", job_id=held.id, error=str(exc)[:300])
        return written

    def checkpoint_if_due(self, step: int, total: int) -> None:
        """Start a periodic checkpoint when one is due (the write runs in the background)."""
        if self.checkpointer is None or not self.active():
            return
        now = self.clock()
        per_step = self.elapsed() / max(1, step - self.tracker.offset)
        if not self.checkpointer.periodic_due(per_step, total, now - self._last_checkpoint):
            return
        self._last_checkpoint = now
        try:
            self.checkpointer.write_in_background(self._snapshots())
            self._count("periodic", "written")
        except Exception as exc:
            self._count("periodic", "failed")
            log.warning("periodic checkpoint not taken", error=str(exc)[:300])

    def preempt_all(self, message: str) -> None:
        checkpoints = self.checkpoint_on_preempt()
        for held in self.active():
            self.outcomes.preempted(
                held, message, gpu_seconds=self.gpu_share(), checkpoint=checkpoints.get(held.id)
            )

    def on_step(self, step: int, total: int) -> None:
        """Called after each denoising step; raises StopGeneration to stop the call."""
        self.last_step, self.last_total = step, total
        self.check_flags()
        if self.active():
            self.report_progress(step, total)
            self.check_flags()
        seconds_per_step = self.elapsed() / max(1, step - self.tracker.offset)
        if self.active() and self.drain.should_preempt(total - step, seconds_per_step):
            self.preempt_all(
                f"worker {self.worker} is shutting down; stopped at step {step}/{total} "
                f"({self.drain.remaining_grace():.1f}s of grace left)"
            )
            raise StopGeneration(Reason.PREEMPTED)
        self.checkpoint_if_due(step, total)
        if not self.active():
            raise StopGeneration(_stop_reason(self.jobs), "no job of this pipeline call is still active")


def _stop_reason(jobs: Sequence[HeldJob]) -> Reason:
    """The reason shared by the ended jobs (for the log), Cancelled when they differ."""
    reasons = {held.reason for held in jobs}
    known = {reason.value for reason in Reason}
    if len(reasons) == 1 and (only := reasons.pop()) in known:
        return Reason(only)
    return Reason.CANCELLED
