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
the rest of the call does not fit the remaining grace. When no job of the call is left
active it raises `StopGeneration`, which stops the pipeline at this step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import structlog

from genjob.jobspec import Reason
from genjob.queue import JobQueue
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
                touch = self.queue.heartbeat(held.job, self.worker)
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
    ) -> None:
        self.queue = queue
        self.worker = worker
        self.jobs = list(jobs)
        self.outcomes = outcomes
        self.drain = drain
        self.progress_interval = progress_interval_seconds
        self.clock = clock
        self.started = clock()
        self._last_report = float("-inf")
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
            touch = self.queue.report_progress(held.job, self.worker, min(step, total), total)
            held.lease_lost = held.lease_lost or not touch.lease_held
            held.cancel_seen = held.cancel_seen or touch.cancel_requested

    def preempt_all(self, message: str) -> None:
        for held in self.active():
            self.outcomes.preempted(held, message, gpu_seconds=self.gpu_share())

    def on_step(self, step: int, total: int) -> None:
        """Called after each denoising step; raises StopGeneration to stop the call."""
        self.last_step, self.last_total = step, total
        self.check_flags()
        if self.active():
            self.report_progress(step, total)
            self.check_flags()
        seconds_per_step = self.elapsed() / max(1, step)
        if self.active() and self.drain.should_preempt(total - step, seconds_per_step):
            self.preempt_all(
                f"worker {self.worker} is shutting down; stopped at step {step}/{total} "
                f"({self.drain.remaining_grace():.1f}s of grace left)"
            )
            raise StopGeneration(Reason.PREEMPTED)
        if not self.active():
            raise StopGeneration(_stop_reason(self.jobs), "no job of this pipeline call is still active")


def _stop_reason(jobs: Sequence[HeldJob]) -> Reason:
    """The reason shared by the ended jobs (for the log), Cancelled when they differ."""
    reasons = {held.reason for held in jobs}
    known = {reason.value for reason in Reason}
    if len(reasons) == 1 and (only := reasons.pop()) in known:
        return Reason(only)
    return Reason.CANCELLED
