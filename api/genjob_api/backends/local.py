"""Local mode: jobs go straight into the core Redis queue (no Kubernetes).

Admission is the caller's (the route calls `genjob.admission.admit`); this module turns
an admitted spec into a queue entry with `genjob.admission.new_job`, exactly as the
operator does, and reads jobs back from their queue records. A tenant's job ids are
indexed in `tenant_jobs(tenant)` (sorted by creation time) for listing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import redis
import structlog
from fastapi.concurrency import run_in_threadpool

from genjob.admission import new_job
from genjob.jobspec import GenerationJobSpec
from genjob.queue import CancelOutcome, JobEvent, JobQueue, JobRecord, JobState
from genjob.timestamps import iso_ms
from genjob_api.auth import Caller
from genjob_api.backends import RECORD_STATUS, WaitEstimator, record_view
from genjob_api.backends.local_submit import SubmitScript, TenantQueueFullError
from genjob_api.errors import ApiError
from genjob_api.models import Generation, GenerationPage, Status
from genjob_api.ratelimit import RateCounter, RateDecision
from genjob_api.webhook_delivery import WebhookTarget

log = structlog.get_logger("genjob.api.backends")

LIST_SCAN_LIMIT = 1000


class LocalBackend:
    def __init__(
        self, queue: JobQueue, submitter: SubmitScript, estimator: WaitEstimator, retention_seconds: int
    ) -> None:
        self.queue = queue
        self.submitter = submitter
        self.client: redis.Redis = queue.client
        self.keys = queue.keys
        self.estimator = estimator
        self.retention_ms = retention_seconds * 1000

    # -- writes ----------------------------------------------------------------------------

    async def submit(
        self,
        job_id: str,
        spec: GenerationJobSpec,
        caller: Caller,
        meta: dict[str, Any],
        rate: RateCounter | None,
    ) -> tuple[Generation, RateDecision | None]:
        job = new_job(job_id, spec, meta)
        try:
            submitted = await self.submitter.submit(job, caller.tenant, rate)
        except TenantQueueFullError as exc:
            raise ApiError(429, "tenant_queue_full", str(exc)) from None
        if not submitted.result.created:
            view = await run_in_threadpool(self.get, job_id, caller)
            if view is not None:
                return view, submitted.rate
        position = submitted.position
        if position is None:  # a worker claimed it already: nothing ahead of it
            position, wait = 0, 0.0
        else:
            wait = self.estimator.estimate(position, submitted.workers)
        view = Generation(
            id=job_id,
            status=RECORD_STATUS[submitted.result.state],
            tier=spec.tier,
            model=spec.model,
            created_at=iso_ms(submitted.now_ms),
            queue_position=position,
            estimated_wait_seconds=wait,
            seed=spec.seed,
            spec=job.spec,
        )
        return view, submitted.rate

    def cancel(self, job_id: str, caller: Caller) -> tuple[str, Generation | None] | None:
        if self._record(job_id, caller) is None:
            return None
        outcome = self.queue.cancel(job_id, "cancelled through the API")
        if outcome == CancelOutcome.NOT_FOUND:
            return None
        return str(outcome), self.get(job_id, caller)

    # -- reads ------------------------------------------------------------------------------

    def _record(self, job_id: str, caller: Caller) -> JobRecord | None:
        record = self.queue.get(job_id)
        if record is None or record.meta.get("tenant") != caller.tenant:
            return None
        return record

    def _view(self, record: JobRecord, position: int | None = None, workers: int | None = None) -> Generation:
        return record_view(record, self.estimator, position=position, workers=workers)

    def get(self, job_id: str, caller: Caller) -> Generation | None:
        record = self._record(job_id, caller)
        if record is None:
            return None
        position = workers = None
        if record.state == JobState.QUEUED:
            place = self.queue.place_in_line(record.id, record.tier)
            position, workers = place.position, place.workers
        return self._view(record, position, workers)

    def stream_reader(self, job_id: str, caller: Caller) -> Callable[[], Generation | None]:
        return lambda: self.get(job_id, caller)

    def list(self, caller: Caller, status: Status | None, limit: int, cursor: str | None) -> GenerationPage:
        index = self.keys.tenant_jobs(caller.tenant)
        start = 0
        if cursor:
            rank = cast("int | None", self.client.zrevrank(index, cursor))
            if rank is None:
                return GenerationPage(items=[], next_cursor=None)
            start = rank + 1
        items: list[Generation] = []
        scanned = 0
        batch = max(limit, 50) if status else limit
        last_id: str | None = None
        while len(items) < limit and scanned < LIST_SCAN_LIMIT:
            ids = cast("list[str]", self.client.zrevrange(index, start, start + batch - 1))
            if not ids:
                return GenerationPage(items=items, next_cursor=None)
            records = self.queue.get_many(ids)
            missing = [i for i, r in zip(ids, records, strict=True) if r is None]
            if missing:
                self.client.zrem(index, *missing)
            for job_id, record in zip(ids, records, strict=True):
                scanned += 1
                start += 1
                last_id = job_id
                if record is None:
                    continue
                view = self._view(record)
                if status is None or view.status == status:
                    items.append(view)
                    if len(items) == limit:
                        break
        more = self.client.zrevrange(index, start, start)
        return GenerationPage(items=items, next_cursor=last_id if more else None)

    def webhook_target(self, event: JobEvent) -> WebhookTarget | None:
        """The URL and key travel in the job's queue metadata (set at submit)."""
        meta = event.meta
        if not meta.get("webhook"):
            return None
        return WebhookTarget(
            event.job_id, str(meta["webhook"]), str(meta.get("key_id", "")), str(meta.get("tenant", ""))
        )

    def not_ready_reason(self) -> str | None:
        try:
            self.client.ping()
        except redis.RedisError as exc:  # the text goes to the log: /readyz is unauthenticated
            log.warning("redis unreachable", error=str(exc))
            return f"redis unreachable ({type(exc).__name__})"
        return None
