"""Job backends: where the gateway creates and reads jobs. One small protocol, two modes.

`LocalBackend` enqueues through the core queue (no Kubernetes); `ClusterBackend` creates
GenerationJob objects in the tenant's namespace and reads their status. Routes only
see `JobBackend`, so both modes give the same API behaviour.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from genjob.jobspec import ColdStart, GenerationJobSpec
from genjob.queue import EventType, JobEvent, JobRecord, JobState
from genjob.timestamps import iso_ms
from genjob_api.auth import Caller
from genjob_api.models import Generation, GenerationPage, ImageOut, ProgressOut, Status
from genjob_api.ratelimit import RateCounter, RateDecision
from genjob_api.webhook_delivery import WebhookTarget

DEFAULT_JOB_SECONDS = 10.0


class JobBackend(Protocol):
    async def submit(
        self,
        job_id: str,
        spec: GenerationJobSpec,
        caller: Caller,
        meta: dict[str, Any],
        rate: RateCounter | None,
    ) -> tuple[Generation, RateDecision | None]:
        """Create the job (idempotent by id) and return its first view (async: no threadpool hop).

        With `rate`, the request is counted there first: over the limit, RateLimitedError
        and nothing is created."""
        ...

    def get(self, job_id: str, caller: Caller) -> Generation | None:
        """The job, or None when it does not exist or belongs to another tenant."""
        ...

    def list(
        self, caller: Caller, status: Status | None, limit: int, cursor: str | None
    ) -> GenerationPage: ...

    def cancel(self, job_id: str, caller: Caller) -> tuple[str, Generation | None] | None:
        """(outcome, job after the cancel), or None when there is no such job of the caller."""
        ...

    def not_ready_reason(self) -> str | None:
        """None when the backend can serve; else why not (for /readyz)."""
        ...

    def webhook_target(self, event: JobEvent) -> WebhookTarget | None:
        """The webhook a final queue event of a job asks for, if any (the dispatcher calls it)."""
        ...

    def stream_reader(self, job_id: str, caller: Caller) -> Callable[[], Generation | None]:
        """What an event stream of the job calls at each poll (the job, or None once gone)."""
        ...


class WaitEstimator:
    """A rough queue-wait estimate: position x mean job run time / active workers.

    The mean run time is an exponentially weighted average of the pipeline seconds of jobs
    that succeeded, learnt from the final-event stream (`observe_event`, fed by the webhook
    dispatcher, which reads every final event once per gateway replica group);
    DEFAULT_JOB_SECONDS until one has been seen."""

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self.mean_seconds = DEFAULT_JOB_SECONDS
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def observe(self, job_id: str, run_seconds: float) -> None:
        with self._lock:
            if job_id in self._seen or run_seconds < 0:
                return
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen.add(job_id)
            self.mean_seconds = (1 - self.alpha) * self.mean_seconds + self.alpha * run_seconds

    def observe_event(self, event: JobEvent) -> None:
        """A final event: a succeeded job's pipeline seconds (over its attempts) count."""
        seconds = event.fields.get("gpu_seconds")
        if event.type != EventType.SUCCEEDED or seconds in (None, ""):
            return
        try:
            self.observe(event.job_id, float(seconds))
        except ValueError:
            return

    def estimate(self, jobs_ahead: int, workers: int) -> float:
        return round(max(0, jobs_ahead + 1) * self.mean_seconds / max(1, workers), 1)


def image_views(job_id: str, result: dict[str, Any] | None) -> tuple[list[ImageOut], list[str]]:
    """The public image entries of a result, and the store URIs behind them."""
    views, uris = [], []
    for i, image in enumerate((result or {}).get("images", [])):
        uris.append(image["uri"])
        views.append(
            ImageOut(
                index=i,
                url=f"/v1/generations/{job_id}/images/{i}",
                sha256=image.get("sha256", ""),
                width=int(image.get("width", 0)),
                height=int(image.get("height", 0)),
                size_bytes=int(image.get("sizeBytes", image.get("size_bytes", 0))),
            )
        )
    return views, uris


RECORD_STATUS = {
    JobState.QUEUED: Status.QUEUED,
    JobState.DELAYED: Status.QUEUED,
    JobState.RUNNING: Status.RUNNING,
    JobState.SUCCEEDED: Status.SUCCEEDED,
    JobState.FAILED: Status.FAILED,
    JobState.CANCELLED: Status.CANCELLED,
}


def record_view(
    record: JobRecord,
    estimator: WaitEstimator,
    *,
    job_id: str | None = None,
    position: int | None = None,
    workers: int | None = None,
) -> Generation:
    """A job as the API shows it, from its queue record. `job_id`: the API's id when it is not
    the record's (cluster mode queues a job under its object's uid)."""
    job_id = job_id or record.id
    status = RECORD_STATUS[record.state]
    images, uris = image_views(job_id, record.result) if status == Status.SUCCEEDED else ([], [])
    progress = None
    if record.progress_total:
        progress = ProgressOut(step=record.progress_step or 0, total=record.progress_total)
    seed = (record.result or {}).get("seed", record.spec.get("seed"))
    view = Generation(
        id=job_id,
        status=status,
        tier=record.tier,
        model=record.spec.get("model"),
        created_at=iso_ms(record.enqueued_at_ms),
        started_at=iso_ms(record.started_at_ms),
        finished_at=iso_ms(record.finished_at_ms),
        progress=progress,
        queue_position=position,
        estimated_wait_seconds=estimator.estimate(position, workers or 0) if position is not None else None,
        attempts=record.attempts,
        reason=record.reason,
        message=record.message,
        seed=seed,
        queue_seconds=record.queue_seconds,
        cold_start=ColdStart.from_worker_start(record.cold_start) if record.cold_start else None,
        resumed_from_step=record.resumed_from_step,
        steps_saved=record.steps_saved,
        images=images,
        spec=record.spec,
    )
    view.set_store_uris(uris)
    return view
