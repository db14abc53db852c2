"""The worker's queue loop: claim compatible jobs, run them, record how each one ended.

One iteration: delete the checkpoints of jobs that ended away from any worker
(`Checkpointer.delete_orphaned`); claim up to `batch_size` jobs (same tier and batch key)
from the pool's tiers in consumption order, blocking up to `idle_block_seconds` when idle
(no polling); mark the pod busy; parse each spec (InvalidSpec, not retried) and check its model
(ModelNotFound, not retried); group the rest by the runtime's batch key and run each
group as one pipeline call with a `StepGuard` as its step callback, while a
`LeaseKeeper` heartbeats every held job. Exceptions map to outcomes:

    StopGeneration     the guard already ended each job (cancel, timeout, preempt, lease lost)
    ModelNotFoundError fail ModelNotFound, not retried
    InvalidSpecError   fail InvalidSpec, not retried (e.g. a bad initImage)
    OutOfMemoryError   fail OutOfMemory, not retried (after the runtime's downscale retry)
    anything else      fail GenerationError, retried after backoff while attempts remain

The loop stops claiming when the worker drains (SIGTERM) or when the circuit breaker
opens (`max_consecutive_failures` worker faults in a row); the latter makes /readyz and
/healthz fail so Kubernetes takes the pod out of service and restarts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog
from pydantic import ValidationError

from genjob.batching import batch_key
from genjob.errors import InvalidSpecError
from genjob.jobspec import GenerationJobSpec, Reason
from genjob.queue import ClaimedJob, JobQueue, WorkerStart
from genjob.settings import WorkerSettings
from genjob_worker.checkpoint import CheckpointRefusedError
from genjob_worker.checkpointer import Checkpointer
from genjob_worker.denoise_state import StepTracker
from genjob_worker.drain import DrainController
from genjob_worker.generate import GenerationOutput, StopGeneration, choose_seed
from genjob_worker.guard import LeaseKeeper, StepGuard
from genjob_worker.memory import CircuitBreaker, OutOfMemoryError
from genjob_worker.metrics import WorkerMetrics
from genjob_worker.models import ModelNotFoundError
from genjob_worker.outcomes import HeldJob, JobOutcomes
from genjob_worker.pod_marker import NoPodMarker, PodMarker
from genjob_worker.runtime import Generator

log = structlog.get_logger()
# What a tenant reads for an unexpected failure; the exception itself is logged, never stored
# in the job (its text can carry paths and internals of the worker).
GENERATION_FAILED_MESSAGE = "generation failed on the worker; it is retried on another attempt"

ERROR_BACKOFF_SECONDS = 1.0


class WorkerLoop:
    """Claims and runs jobs until the worker drains (see the module docstring)."""

    def __init__(
        self,
        *,
        queue: JobQueue,
        generator: Generator,
        outcomes: JobOutcomes,
        worker_name: str,
        tiers: Sequence[str],
        settings: WorkerSettings,
        default_model: str,
        known_models: Sequence[str],
        drain: DrainController,
        breaker: CircuitBreaker,
        metrics: WorkerMetrics,
        pod_marker: PodMarker | None = None,
        release_memory: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        start: WorkerStart | None = None,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.checkpointer = checkpointer if checkpointer is not None else outcomes.checkpointer
        self.queue = queue
        self.generator = generator
        self.outcomes = outcomes
        self.worker = worker_name
        self.tiers = list(tiers)
        self.settings = settings
        self.default_model = default_model
        self.known_models = set(known_models)
        self.drain = drain
        self.breaker = breaker
        self.metrics = metrics
        self.pod_marker = pod_marker or NoPodMarker()
        self.release_memory = release_memory
        self.clock = clock
        self.start = start  # sent with every claim until one returns jobs: those ran cold

    # -- the loop -------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> None:
        """Claim and run until draining (or, with `once`, until one claim has been handled)."""
        log.info(
            "worker loop started", worker=self.worker, tiers=self.tiers, batch_size=self.settings.batch_size
        )
        try:
            while not self.drain.draining:
                if self.breaker.is_open:
                    self._circuit_open()
                    break
                try:
                    self.checkpointer.delete_orphaned(self.queue)
                    handled = self.claim_and_run()
                except Exception:
                    log.exception("worker loop iteration failed; retrying")
                    self.drain.event.wait(ERROR_BACKOFF_SECONDS)
                    continue
                if once and handled:
                    break
        finally:
            self.pod_marker.set_busy(False)
        log.info("worker loop stopped", draining=self.drain.draining, circuit_open=self.breaker.is_open)

    def _circuit_open(self) -> None:
        self.pod_marker.set_busy(False)
        log.error(
            "circuit breaker open: not claiming any more; waiting for a restart",
            consecutive_failures=self.breaker.consecutive_failures,
        )
        while not self.drain.event.wait(1.0):  # a timeout keeps signal handlers responsive
            pass

    def claim_and_run(self) -> int:
        """One claim (blocking while idle) and the run of what it returned; the number of jobs."""

        def claim(block_seconds: float) -> list[ClaimedJob]:
            return self.queue.claim(
                self.tiers,
                self.worker,
                max_jobs=self.settings.batch_size,
                block_seconds=block_seconds,
                cold=self.start,
            )

        jobs = claim(0.0)
        if not jobs:
            # Idle the moment nothing waits, not after the blocking wait: a scale-in spares pods
            # marked busy and takes idle ones, so a stale mark misleads it.
            self.pod_marker.set_busy(False)
            jobs = claim(self.settings.idle_block_seconds)
            if not jobs:
                return 0
        cold = "true" if self.start is not None else "false"
        self.start = None
        for job in jobs:
            wait = max(0.0, time.time() - job.enqueued_at_ms / 1000)
            self.metrics.job_wait_seconds.labels(job.tier, cold).observe(wait)
        self.pod_marker.set_busy(True)
        self.metrics.in_progress.set(len(jobs))
        try:
            self.run_claimed(jobs)
        finally:
            self.metrics.in_progress.set(0)
            self.release_memory()
        return len(jobs)

    # -- one claim ------------------------------------------------------------------------

    def run_claimed(self, jobs: Sequence[ClaimedJob]) -> None:
        held = [self._hold(job) for job in jobs]
        with LeaseKeeper(self.queue, self.worker, held, self.settings.heartbeat_interval_seconds):
            runnable = [h for h in held if h.active]
            for group in _groups(runnable):
                if self.drain.draining:
                    for h in group:
                        self.outcomes.preempted(h, f"worker {self.worker} is shutting down; job not started")
                    continue
                self.run_group(group)

    def _hold(self, job: ClaimedJob) -> HeldJob:
        """Parse and check one claimed job; jobs that cannot run are failed here."""
        now = self.clock()
        try:
            spec = GenerationJobSpec.model_validate(job.spec)
        except ValidationError as exc:
            model = str(job.spec.get("model") or self.default_model)
            held = HeldJob(job=job, spec=None, model=model, seed=0, deadline=now)
            self.outcomes.failed(held, Reason.INVALID_SPEC, _validation_message(exc), retryable=False)
            return held
        model = spec.effective_model(self.default_model)
        held = HeldJob(
            job=job, spec=spec, model=model, seed=choose_seed(spec), deadline=now + spec.timeout_seconds
        )
        structlog.contextvars.bind_contextvars(job_id=job.id)
        log.info("job claimed", tier=job.tier, model=model, attempts=job.attempts, steps=spec.steps)
        structlog.contextvars.unbind_contextvars("job_id")
        if model not in self.known_models:
            self.outcomes.failed(
                held,
                Reason.MODEL_NOT_FOUND,
                f"model {model!r} is not served by this worker; "
                f"configured: {', '.join(sorted(self.known_models))}",
                retryable=False,
            )
        elif job.checkpoint:
            self._load_checkpoint(held)
        return held

    def _load_checkpoint(self, held: HeldJob) -> None:
        """Resume from the job's checkpoint, or say why not and start from step 0."""
        try:
            checkpoint = self.checkpointer.load(held.job, held.model)
        except CheckpointRefusedError as exc:
            self._refuse_checkpoint(held, str(exc))
            return
        held.resume, held.seed = checkpoint, checkpoint.seed
        snap = checkpoint.snapshot
        self.queue.record_resume(held.job, snap.total, snap.step)
        self.metrics.checkpoints.labels("claim", "resumed").inc()
        log.info("resuming from checkpoint", job_id=held.id, step=snap.step, total=snap.total)

    def _refuse_checkpoint(self, held: HeldJob, why: str) -> None:
        held.resume = None
        message = f"checkpoint refused, starting from step 0: {why}"
        self.queue.record_resume(held.job, 0, None, message)
        self.metrics.checkpoints.labels("claim", "refused").inc()
        self.checkpointer.delete(held.id)
        log.warning("checkpoint refused", job_id=held.id, why=why)

    def run_group(self, group: Sequence[HeldJob]) -> None:
        """One pipeline call for compatible jobs, and the recording of each job's outcome."""
        guard = StepGuard(
            self.queue,
            self.worker,
            group,
            self.outcomes,
            self.drain,
            self.settings.progress_interval_seconds,
            clock=self.clock,
            checkpointer=self.checkpointer,
            tracker=StepTracker(),
        )
        guard.check_flags()
        active = guard.active()
        if not active:
            return
        structlog.contextvars.bind_contextvars(job_id=",".join(h.id for h in active))
        try:
            self._generate(guard, active)
        finally:
            structlog.contextvars.unbind_contextvars("job_id")

    def _call(self, guard: StepGuard, active: list[HeldJob]) -> list[GenerationOutput]:
        specs = [h.spec for h in active if h.spec is not None]
        first = 0
        for held, spec in zip(active, specs, strict=True):
            guard.image_ranges[held.id] = (first, spec.num_images)
            first += spec.num_images

        def generate() -> list[GenerationOutput]:
            return self.generator.generate(
                specs,
                model_name=active[0].model,
                seeds=[h.seed for h in active],
                on_step=guard.on_step,
                tracker=guard.tracker,
                resumes=[h.resume for h in active],
                tenants=[h.tenant for h in active],
            )

        try:
            return generate()
        except CheckpointRefusedError as exc:  # the pipeline does not match the checkpoint: start over
            for held in active:
                if held.resume is not None and held.spec is not None:
                    self._refuse_checkpoint(held, str(exc))
                    held.seed = choose_seed(held.spec)
            return generate()

    def _generate(self, guard: StepGuard, active: list[HeldJob]) -> None:
        try:
            outputs = self._call(guard, active)
        except StopGeneration as stop:
            self._fail_active(guard, Reason.GENERATION_ERROR, f"stopped unexpectedly: {stop}", retryable=True)
        except ModelNotFoundError as exc:
            configured = active[0].model in self.known_models  # configured, but will not load
            for h in guard.active():
                h.extra["worker_fault"] = configured
            if configured:  # the detail names the weights' location: the log has it, the job does not
                log.error("configured model failed to load", model=active[0].model, error=str(exc))
                message = f"model {active[0].model!r} failed to load on this worker; see the worker's log"
            else:
                message = str(exc)
            self._fail_active(guard, Reason.MODEL_NOT_FOUND, message, retryable=False)
        except InvalidSpecError as exc:
            self._fail_active(guard, Reason.INVALID_SPEC, str(exc), retryable=False)
        except OutOfMemoryError as exc:
            self._fail_active(guard, Reason.OUT_OF_MEMORY, str(exc), retryable=False)
        except Exception:
            log.exception("generation failed")  # the exception text stays in the worker's log
            self._fail_active(guard, Reason.GENERATION_ERROR, GENERATION_FAILED_MESSAGE, retryable=True)
        else:
            for held, output in zip(active, outputs, strict=True):
                self._record_output(guard, held, output)

    def _record_output(self, guard: StepGuard, held: HeldJob, output: GenerationOutput) -> None:
        if not held.active:
            return  # ended during the call (cancelled or timed out while batched with others)
        if held.lease_lost:
            self.outcomes.lease_lost(held)
        elif held.cancel_seen:
            self.outcomes.cancelled(held, gpu_seconds=guard.gpu_share())
        else:
            try:
                self.outcomes.succeeded(held, output)
            except Exception:
                log.exception("storing the result failed", job_id=held.id)
                self.outcomes.failed(
                    held, Reason.GENERATION_ERROR, "storing the result failed on the worker", retryable=True
                )

    def _fail_active(self, guard: StepGuard, reason: Reason, message: str, *, retryable: bool) -> None:
        share = guard.gpu_share()
        for held in guard.active():
            if held.lease_lost:
                self.outcomes.lease_lost(held)
            else:
                self.outcomes.failed(held, reason, message, retryable=retryable, gpu_seconds=share)


def _groups(jobs: Sequence[HeldJob]) -> list[list[HeldJob]]:
    """Jobs that can share a pipeline call, in claim order (img2img and resumed jobs run alone)."""
    groups: dict[object, list[HeldJob]] = {}
    for index, held in enumerate(jobs):
        assert held.spec is not None
        key = batch_key(held.spec, held.model) if held.resume is None else None
        groups.setdefault(key if key is not None else ("alone", index), []).append(held)
    return list(groups.values())


def _validation_message(exc: ValidationError) -> str:
    problems = [f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors()]
    return "invalid spec: " + "; ".join(problems)
