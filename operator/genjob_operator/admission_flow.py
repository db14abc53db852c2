"""Admission, quota and enqueue: a level-based loop over the cached GenerationJobs.

Each pass looks at what exists (the cache) and acts:
1. deleting jobs that still carry our finalizer are finalized (see `finalize`);
2. a job is admitted when the queue has its record (by uid), whatever its finalizers say:
   new or Pending jobs the queue does not know are checked (the tenant: `quota.job_tenant`;
   `check_job`: what the CRD schema cannot express); invalid ones get phase Failed with
   reason InvalidSpec or ModelNotFound;
3. valid ones are admitted under the per-tenant quota (`quota.quota_decision`, counts from
   the queue's records), oldest first: add the finalizer (one write), then enqueue by uid
   (idempotent). Over-quota jobs get phase Pending / QuotaExceeded once and wait;
4. admitted, unfinished jobs without our finalizer (the operator restarted between the
   enqueue and the finalizer, or a user removed it) get it again, so a deletion always
   reaches `finalize`;
5. Queued or Running jobs the queue lost the record of (`report_lost`, from the status
   resync) are enqueued again, with a warning Event: they run again from the start.
Status `Queued` is written by `status_sync` from the queue's own `queued` event, so one
writer orders every status transition. The kopf handler wakes the loop on each change;
it also runs every `resync_seconds`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis.exceptions
import structlog
from pydantic import ValidationError

from genjob.admission import ModelNotConfiguredError, admit, new_job
from genjob.errors import InvalidSpecError, UnknownTierError
from genjob.jobspec import GenerationJobSpec, Phase, Reason
from genjob.queue import JobQueue
from genjob.settings import GenjobSettings
from genjob_operator.cache import JobCache, JobView
from genjob_operator.kube import EventPoster, KubeWriter, ObjectGone, TenantResolver, now_rfc3339
from genjob_operator.metrics import OperatorMetrics
from genjob_operator.quota import OwnerNotAllowedError, QuotaKey, quota_decision, quota_message
from genjob_operator.status_patches import status_patch

log = structlog.get_logger("genjob.operator.admission")


@dataclass(frozen=True)
class Checked:
    """Outcome of `check_job`: an admitted spec, or a reason and message to fail with."""

    spec: GenerationJobSpec | None
    reason: Reason | None = None
    message: str | None = None


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"spec.{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)


def check_job(spec: dict[str, Any], tenant: str, settings: GenjobSettings) -> Checked:
    """The checks the schema cannot express (model known, tier exists and allows these
    parameters, tenant allowed in the tier). Never raises for bad input."""
    try:
        parsed = GenerationJobSpec.model_validate(spec)
    except ValidationError as exc:
        return Checked(None, Reason.INVALID_SPEC, _validation_message(exc))
    try:
        return Checked(admit(parsed, tenant, settings))
    except ModelNotConfiguredError as exc:
        return Checked(None, Reason.MODEL_NOT_FOUND, str(exc))
    except (InvalidSpecError, UnknownTierError) as exc:
        return Checked(None, Reason.INVALID_SPEC, str(exc))


def failed_status(reason: Reason, message: str, now: str) -> dict[str, Any]:
    return status_patch(phase=Phase.FAILED, reason=reason, message=message, finished_at=now)


def pending_status(reason: Reason, message: str) -> dict[str, Any]:
    return status_patch(phase=Phase.PENDING, reason=reason, message=message)


def job_meta(view: JobView, tenant: str, model: str) -> dict[str, str]:
    """Travels on every queue event of the job, so events map back to the CR without lookups."""
    return {"namespace": view.namespace, "name": view.name, "uid": view.uid, "tenant": tenant, "model": model}


class Admitter:
    """The admission loop (runs in the leader only)."""

    def __init__(
        self,
        cache: JobCache,
        kube: KubeWriter,
        queue: JobQueue,
        settings: GenjobSettings,
        tenants: TenantResolver,
        events: EventPoster,
        metrics: OperatorMetrics,
        resync_seconds: float = 10.0,
        workers: int = 8,
        on_enqueued: Callable[[str], None] | None = None,
    ) -> None:
        self.cache, self.kube, self.queue, self.settings = cache, kube, queue, settings
        self.tenants, self.events, self.metrics = tenants, events, metrics
        self.resync_seconds = resync_seconds
        self.on_enqueued = on_enqueued  # tier -> None: KEDA's push trigger learns of the work at once
        self._wake = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="admit")
        self._ensured: set[str] = set()  # admitted uids whose enqueue this process has confirmed
        self._queue_full: set[str] = set()  # uids marked QueueFull (Redis refused the enqueue)
        self._marked_waiting: set[str] = set()
        self._lost: set[str] = set()  # uids reported lost by the status resync, not yet re-queued

    def wake(self) -> None:
        self._wake.set()

    def report_lost(self, view: JobView) -> None:
        """The queue has no record of this Queued/Running job: queue it again on the next pass."""
        self._lost.add(view.uid)
        self.wake()

    def run(self, stop: threading.Event) -> None:
        self.cache.seeded.wait()
        while not stop.is_set():
            self._wake.clear()
            try:
                self.pass_once()
            except Exception as exc:
                self.metrics.reconcile_errors.labels(stage="admission").inc()
                log.exception("admission pass failed", error=str(exc))
            self.metrics.loop_heartbeat.labels(loop="admission").set_to_current_time()
            self._wake.wait(self.resync_seconds)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _limit(self, tier: str) -> int | None:
        cfg = self.settings.tiers.get(tier)
        return cfg.limits.max_concurrent_per_tenant if cfg else None

    def pass_once(self) -> None:
        jobs = self.cache.snapshot()
        self._lost &= {v.uid for v in jobs if not v.is_final and not v.deleting}
        futures = []
        for view in jobs:
            if view.deleting and view.admitted:
                futures.append(self._pool.submit(self._guard, "finalize", self.finalize, view))
            elif view.uid in self._lost and not view.is_final:
                futures.append(self._pool.submit(self._guard, "enqueue", self.requeue_lost, view))
            elif self._lacks_finalizer(view):
                futures.append(self._pool.submit(self._guard, "enqueue", self.restore_finalizer, view))
        undecided = [v for v in jobs if self._undecided(v)]
        known = self.queue.known_ids([v.uid for v in undecided]) if undecided else set()
        for view in (v for v in undecided if v.uid in known):  # admitted before: keep it so
            futures.append(self._pool.submit(self._guard, "enqueue", self.confirm, view))
        # Checks before quota: an invalid job never takes a slot.
        valid: list[JobView] = []
        specs: dict[str, GenerationJobSpec] = {}
        tenants: dict[str, str] = {}
        for view in (v for v in undecided if v.uid not in known):
            checked, tenant = self._check(view)
            if checked.spec is None:
                futures.append(self._pool.submit(self._guard, "invalid", self.reject, view, checked))
            else:
                valid.append(view)
                specs[view.uid], tenants[view.uid] = checked.spec, tenant
        plan = quota_decision(
            valid,
            self._active({(tenants[v.uid], specs[v.uid].tier) for v in valid}),
            lambda v: tenants[v.uid],
            self._limit,
        )
        for view in plan.admit:
            futures.append(
                self._pool.submit(
                    self._guard, "enqueue", self.admit, view, specs[view.uid], tenants[view.uid]
                )
            )
        for view in plan.wait:
            if view.reason != str(Reason.QUOTA_EXCEEDED) and view.uid not in self._marked_waiting:
                futures.append(
                    self._pool.submit(self._guard, "quota", self.mark_waiting, view, plan, tenants[view.uid])
                )
        for f in futures:
            f.result()

    def _undecided(self, view: JobView) -> bool:
        """Not known to be in the queue yet (by this process): admission decides, or confirms."""
        return view.waiting_for_admission and view.uid not in self._ensured

    def _lacks_finalizer(self, view: JobView) -> bool:
        """Queued or Running (admitted) and unfinished, but without our finalizer."""
        return not view.admitted and not view.deleting and view.phase in (Phase.QUEUED, Phase.RUNNING)

    def _check(self, view: JobView) -> tuple[Checked, str]:
        """(the checks' outcome, the job's tenant); a refused spec.owner fails the job."""
        try:
            tenant = self.tenants.tenant(view)
        except OwnerNotAllowedError as exc:
            return Checked(None, Reason.INVALID_SPEC, str(exc)), ""
        return check_job(view.spec, tenant, self.settings), tenant

    def _active(self, groups: set[QuotaKey]) -> dict[QuotaKey, int]:
        """Admitted unfinished jobs per (tenant, tier), from the queue's records."""
        ordered = sorted(groups)
        counts = self.queue.count_unfinished(
            [self.queue.keys.tenant_admitted(t, tier) for t, tier in ordered]
        )
        return dict(zip(ordered, counts, strict=True))

    def _guard(self, stage: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except ObjectGone:
            pass
        except Exception as exc:
            self.metrics.reconcile_errors.labels(stage=stage).inc()
            log.warning("reconcile step failed; retried on the next pass", stage=stage, error=str(exc))

    # -- actions ----------------------------------------------------------------------------

    def admit(self, view: JobView, spec: GenerationJobSpec, tenant: str) -> None:
        """Finalizer first (so a deletion is always seen), then the idempotent enqueue."""
        if not view.admitted:
            view = self.kube.add_finalizer(view)
            self.cache.written(view)
        self._enqueue(view, spec, tenant)

    def confirm(self, view: JobView) -> None:
        """The queue has the job (admitted before a restart, or the Queued status is on its
        way): make sure it carries the finalizer."""
        if not view.admitted:
            self.restore_finalizer(view)
        self._ensured.add(view.uid)

    def restore_finalizer(self, view: JobView) -> None:
        self.cache.written(self.kube.add_finalizer(view))

    def requeue_lost(self, view: JobView) -> None:
        message = (
            f"the queue had no record of this {view.phase} job (Redis lost data: restarted without "
            "persistence, flushed or evicted?); queued again, it runs from the start"
        )
        log.warning("queue record lost; enqueueing again", job=f"{view.namespace}/{view.name}", uid=view.uid)
        self.metrics.records_lost.inc()
        self.events.post(view.namespace, view.name, view.uid, "QueueRecordLost", message, warning=True)
        self._lost.discard(view.uid)
        checked, tenant = self._check(view)
        if checked.spec is None:  # settings changed since admission: fail it now
            self.reject(view, checked)
            return
        self._enqueue(view, checked.spec, tenant)

    def _enqueue(self, view: JobView, spec: GenerationJobSpec, tenant: str) -> None:
        assert spec.model is not None
        try:
            result = self.queue.enqueue(
                new_job(view.uid, spec, job_meta(view, tenant, spec.model)),
                index=self.queue.keys.tenant_admitted(tenant, spec.tier),
            )
        except redis.exceptions.OutOfMemoryError:
            self.mark_queue_full(view)
            raise  # logged by _guard; the enqueue is tried again on every pass
        self._queue_full.discard(view.uid)
        self._ensured.add(view.uid)
        if result.created:
            self.metrics.admitted.labels(tier=spec.tier).inc()
            if self.on_enqueued is not None:
                self.on_enqueued(spec.tier)
        log.debug("enqueued", job=f"{view.namespace}/{view.name}", uid=view.uid, created=result.created)

    def reject(self, view: JobView, checked: Checked) -> None:
        assert checked.reason is not None and checked.message is not None
        updated = self.kube.patch_status(view, failed_status(checked.reason, checked.message, now_rfc3339()))
        self.cache.written(updated)
        self.events.post(
            view.namespace, view.name, view.uid, str(checked.reason), checked.message, warning=True
        )

    def mark_queue_full(self, view: JobView) -> None:
        """Redis is at maxmemory: say so on the job once (it stays Pending and is retried)."""
        if view.uid in self._queue_full:
            return
        message = (
            "the job queue (Redis) is full: it refuses writes at its maxmemory limit; the job is "
            "queued as soon as Redis has room (raise redis.maxmemory or shorten retention)"
        )
        updated = self.kube.patch_status(view, pending_status(Reason.QUEUE_FULL, message))
        self._queue_full.add(view.uid)
        self.cache.written(updated)
        self.events.post(view.namespace, view.name, view.uid, str(Reason.QUEUE_FULL), message, warning=True)

    def mark_waiting(self, view: JobView, plan: Any, tenant: str) -> None:
        tier = str(view.spec.get("tier"))
        cap = self._limit(tier) or 0
        message = quota_message(tenant, tier, plan.active.get((tenant, tier), 0), cap)
        updated = self.kube.patch_status(view, pending_status(Reason.QUOTA_EXCEEDED, message))
        self._marked_waiting.add(view.uid)
        self.cache.written(updated)
        self.events.post(view.namespace, view.name, view.uid, str(Reason.QUOTA_EXCEEDED), message)

    def finalize(self, view: JobView) -> None:
        """Deleted: take it out of the queue (or flag it for its worker), then release it."""
        outcome = self.queue.cancel(view.uid, f"GenerationJob {view.namespace}/{view.name} deleted")
        log.info("finalizing deleted job", job=f"{view.namespace}/{view.name}", outcome=str(outcome))
        updated = self.kube.remove_finalizer(view)
        if updated is not None:
            self.cache.written(updated)
        self._ensured.discard(view.uid)
        self._marked_waiting.discard(view.uid)
