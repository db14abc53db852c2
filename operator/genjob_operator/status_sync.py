"""The single consumer of the workers' event stream: queue events become status patches.

It reads the stream as consumer `operator` of the `genjob-operator` group, so a restart
re-reads whatever was received but not acknowledged (nothing is missed), and acknowledges
a batch only after its patches are written. Events of one job within a batch are folded
into one merge patch (latest wins), so a job that is queued and claimed in the same
batch costs one write. Progress is mirrored at most every `progress_mirror_seconds` per
job; a transition carries the latest progress for free. Each transition also posts a
Kubernetes Event (best effort, counted separately).
The event -> patch mapping is pure and lives in `status_patches`.

A level-based safety net (`resync`, every `resync_seconds`): the stream is capped, so
events can be trimmed away while the operator is down for long. Jobs whose CR is not
final but whose queue record finished more than `resync_grace_seconds` ago get their
final status from the record (`record_to_status_patch`), so no job stays Running (and
holds a quota slot) forever. Queued or Running CRs whose record is gone altogether (Redis
restarted without persistence, a flush, an eviction) are reported to `on_lost`: the
admitter queues them again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
import structlog
from kubernetes.client.exceptions import ApiException

from genjob.jobspec import Phase
from genjob.keys import RedisKeys
from genjob.queue import EventReader, EventType, JobEvent, JobQueue
from genjob_operator.cache import JobCache, JobView
from genjob_operator.cold_start import PodAndNode, add_pod_and_node
from genjob_operator.kube import EventPoster, KubeWriter, ObjectGone
from genjob_operator.metrics import OperatorMetrics
from genjob_operator.status_patches import (
    EVENT_REASONS,
    JobUpdate,
    event_message,
    fold_events,
    progress_fields,
    record_to_status_patch,
)

log = structlog.get_logger("genjob.operator.status")

CONSUMER = "operator"


class ProgressSampler:
    """Decides whether a progress-only update may be written now (bounded memory)."""

    def __init__(self, min_interval: float, capacity: int = 50_000) -> None:
        self.min_interval = min_interval
        self.capacity = capacity
        self._last: OrderedDict[str, float] = OrderedDict()

    def wrote(self, job_id: str, now: float) -> None:
        self._last[job_id] = now
        self._last.move_to_end(job_id)
        while len(self._last) > self.capacity:
            self._last.popitem(last=False)

    def due(self, job_id: str, now: float) -> bool:
        last = self._last.get(job_id)
        return last is None or now - last >= self.min_interval

    def forget(self, job_id: str) -> None:
        self._last.pop(job_id, None)


class StatusSync:
    """The consumer loop. `process(events)` is the testable core."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        cache: JobCache,
        kube: KubeWriter,
        events: EventPoster,
        metrics: OperatorMetrics,
        progress_mirror_seconds: float,
        batch: int = 500,
        coalesce_seconds: float = 0.05,
        on_final: Any = None,
        on_lost: Any = None,
        writers: int = 4,
        queue: JobQueue | None = None,
        resync_seconds: float = 60.0,
        resync_grace_seconds: float = 60.0,
        read_pod_and_node: PodAndNode | None = None,
    ) -> None:
        self.client, self.keys, self.cache, self.kube = client, keys, cache, kube
        self.events, self.metrics = events, metrics
        self.sampler = ProgressSampler(progress_mirror_seconds)
        self.batch = batch
        self.coalesce_seconds = coalesce_seconds
        self.on_final = on_final
        self.on_lost = on_lost
        self.reader: EventReader | None = None
        self._totals: OrderedDict[str, int] = OrderedDict()  # last known total steps per job
        self._pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="status")
        self.queue = queue
        self.resync_seconds = resync_seconds
        self.resync_grace_ms = int(resync_grace_seconds * 1000)
        self.read_pod_and_node = read_pod_and_node  # cold jobs: their worker's pod and node

    def _reader(self) -> EventReader:
        if self.reader is None:
            self.reader = EventReader(self.client, self.keys, CONSUMER)
        return self.reader

    def run(self, stop: threading.Event) -> None:
        self.cache.seeded.wait()
        backoff = 0.5
        last_adopt = 0.0
        last_resync = time.monotonic()
        while not stop.is_set():
            try:
                if self.queue is not None and time.monotonic() - last_resync > self.resync_seconds:
                    last_resync = time.monotonic()
                    self.resync()
                reader = self._reader()
                events: list[JobEvent] = []
                if time.monotonic() - last_adopt > 30:  # entries a dead consumer of another name held
                    events = reader.adopt_idle(min_idle_ms=60_000, count=self.batch)
                    last_adopt = time.monotonic()
                if not events:
                    events = reader.read(count=self.batch, block_ms=1000)
                    if events and self.coalesce_seconds and len(events) < self.batch:
                        time.sleep(self.coalesce_seconds)  # let a claim right after an enqueue join
                        events += reader.read(count=self.batch, block_ms=None)
                self.process(events)
                reader.ack(events)
                backoff = 0.5
            except Exception as exc:
                self.metrics.reconcile_errors.labels(stage="status").inc()
                log.warning("status sync failed; re-reading unacknowledged events", error=str(exc))
                self.reader = None  # a new reader starts with this consumer's backlog
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            self.metrics.loop_heartbeat.labels(loop="status").set_to_current_time()

    def process(self, events: list[JobEvent]) -> int:
        """Write the status patches a batch asks for; raises (so nothing is acked) on API
        errors worth retrying. Returns the number of status writes."""
        for e in events:
            self.metrics.events_consumed.labels(type=e.type.value).inc()
            total = e.int_field("total") if e.type == EventType.PROGRESS else None
            if total:
                self._totals[e.job_id] = total
                self._totals.move_to_end(e.job_id)
                if len(self._totals) > 50_000:
                    self._totals.popitem(last=False)
        now = time.monotonic()
        todo: list[tuple[JobView, JobUpdate]] = []
        for job_id, update in fold_events(events).items():
            view = self.cache.get(update.meta.get("uid", ""))
            if view is None or view.uid != job_id or view.deleting:
                continue  # not a CR of ours (gateway local mode), or deleted since
            if update.progress_only and not self.sampler.due(job_id, now):
                continue
            total = self._totals.pop(job_id, None) if update.final else None
            if total and update.patch.get("phase") == Phase.SUCCEEDED:
                update.patch.update(progress_fields(total, total))
            todo.append((view, update))
        if len(todo) <= 1:
            results = [self._write(view, update, now) for view, update in todo]
        else:  # different jobs are independent; each job has one patch per batch
            results = list(self._pool.map(lambda item: self._write(item[0], item[1], now), todo))
        return sum(results)

    def _write(self, view: JobView, update: JobUpdate, now: float) -> int:
        if update.patch.get("coldStart") and self.read_pod_and_node is not None:
            add_pod_and_node(update.patch, self.read_pod_and_node)
        try:
            updated = self.kube.patch_status(view, update.patch)
        except ObjectGone:
            return 0
        except ApiException as exc:
            if exc.status in (400, 422):  # the patch itself is bad: retrying cannot help
                self.metrics.reconcile_errors.labels(stage="status_invalid").inc()
                log.error("status patch rejected", job=update.job_id, error=str(exc.body)[:500])
                return 0
            raise
        self.cache.written(updated)
        self.sampler.wrote(update.job_id, now)
        if update.final:
            self.sampler.forget(update.job_id)
            if self.on_final is not None:
                self.on_final()
        for e in update.transitions:
            reason, warning = EVENT_REASONS[e.type]
            self.events.post(view.namespace, view.name, view.uid, reason, event_message(e), warning)
        return 1

    def resync(self, now_ms: int | None = None) -> int:
        """Give CRs whose final event never arrived (trimmed from the stream) their final
        status from the queue record. Returns the number of status writes."""
        assert self.queue is not None
        waiting = [v for v in self.cache.snapshot() if v.admitted and not v.is_final and not v.deleting]
        if not waiting:
            return 0
        if now_ms is None:
            seconds, micros = self.client.time()
            now_ms = seconds * 1000 + micros // 1000
        writes = 0
        for view, record in zip(waiting, self.queue.get_many([v.uid for v in waiting]), strict=True):
            if record is None:
                # Queued/Running were written from the queue's own events, so the record
                # existed; an admitted job without a phase yet is the admitter's to resume.
                if view.phase in (Phase.QUEUED, Phase.RUNNING) and self.on_lost is not None:
                    self.on_lost(view)
                continue
            if not record.finished_at_ms:
                continue
            if now_ms - record.finished_at_ms < self.resync_grace_ms:
                continue  # its event is probably still on its way
            patch = record_to_status_patch(record)
            if patch is None:
                continue
            log.warning(
                "final status restored from the queue record (its event was lost)",
                job=f"{view.namespace}/{view.name}",
                state=str(record.state),
            )
            written = self._write(view, _resync_update(view.uid, patch), time.monotonic())
            if written:
                phase = str(patch["phase"])
                message = f"{phase} (restored from the queue record; its stream event was lost)"
                self.events.post(
                    view.namespace, view.name, view.uid, phase, message, phase != Phase.SUCCEEDED
                )
            writes += written
        return writes


def _resync_update(job_id: str, patch: dict[str, Any]) -> JobUpdate:
    """A final-status update that carries no stream events (resync posts its own Event)."""
    return JobUpdate(job_id, {}, patch=patch, progress_only=False, final=True)
