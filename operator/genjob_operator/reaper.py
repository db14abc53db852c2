"""Queue maintenance in the leader: the lease reaper, queue metrics and the orphan sweep.

- `queue.reap()` every `reaper_interval_seconds`: jobs of dead workers (expired leases) go
  back to the head of their queue with attempts+1, or fail with reason WorkerLost into the
  dead-letter list after maxAttempts; retries whose backoff passed become claimable. The
  resulting `requeued`/`failed` events reach the CRs through status_sync.
- pending / in-flight / oldest age per tier and jobs by phase and reason into metrics; the
  same counts tell `TierActivity` which tiers went idle (KEDA's push trigger, push_scaler.py).
- orphans: unfinished queue jobs created by this operator (meta carries a uid) whose
  GenerationJob no longer exists (e.g. finalizers removed by hand while the operator was
  down) are cancelled, so no worker time is spent on them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import structlog

from genjob.queue import JobQueue, JobRecord
from genjob_operator.cache import JobCache
from genjob_operator.metrics import OperatorMetrics
from genjob_operator.tier_activity import TierActivity

log = structlog.get_logger("genjob.operator.reaper")


def find_orphans(
    records: Iterable[JobRecord | None],
    known_uids: set[str],
    namespaces: list[str],
    now_ms: int,
    grace_ms: int,
) -> list[JobRecord]:
    """Unfinished queue jobs of GenerationJobs that are gone (pure)."""
    out = []
    for rec in records:
        if rec is None or rec.state.is_final:
            continue
        uid = rec.meta.get("uid")
        if not uid or uid in known_uids:
            continue
        if namespaces and rec.meta.get("namespace") not in namespaces:
            continue  # another operator's namespace
        if now_ms - rec.enqueued_at_ms < grace_ms:
            continue
        out.append(rec)
    return out


class Reaper:
    def __init__(
        self,
        queue: JobQueue,
        cache: JobCache,
        metrics: OperatorMetrics,
        interval: float,
        namespaces: list[str],
        orphan_every: float = 60.0,
        orphan_grace_seconds: float = 60.0,
        activity: TierActivity | None = None,
    ) -> None:
        self.queue, self.cache, self.metrics = queue, cache, metrics
        self.interval = interval
        self.namespaces = namespaces
        self.orphan_every = orphan_every
        self.orphan_grace_ms = int(orphan_grace_seconds * 1000)
        self._last_orphan_sweep = time.monotonic()
        self.activity = activity

    def pass_once(self) -> None:
        result = self.queue.reap()
        if result.requeued or result.dead_lettered or result.cancelled:
            log.info(
                "reaped expired leases",
                requeued=result.requeued,
                dead_lettered=result.dead_lettered,
                cancelled=result.cancelled,
            )
        read_from = self.activity.begin_read() if self.activity is not None else 0
        stats = self.queue.stats()
        if self.activity is not None:
            self.activity.observe({s.tier: s.pending + s.inflight for s in stats}, read_from)
        for s in stats:
            self.metrics.pending.labels(tier=s.tier).set(s.pending)
            self.metrics.inflight.labels(tier=s.tier).set(s.inflight)
            self.metrics.delayed.labels(tier=s.tier).set(s.delayed)
            self.metrics.dead_letters.labels(tier=s.tier).set(s.dead)
            self.metrics.oldest_age.labels(tier=s.tier).set(s.oldest_pending_age_seconds)
        self.metrics.set_job_counts(self.cache.phase_counts())
        if time.monotonic() - self._last_orphan_sweep >= self.orphan_every:
            self._last_orphan_sweep = time.monotonic()
            self.sweep_orphans()

    def sweep_orphans(self) -> int:
        ids = self.queue.unfinished_ids()
        if not ids:
            return 0
        known = {v.uid for v in self.cache.snapshot()}
        seconds, micros = self.queue.client.time()
        now_ms = seconds * 1000 + micros // 1000
        orphans = find_orphans(self.queue.get_many(ids), known, self.namespaces, now_ms, self.orphan_grace_ms)
        for rec in orphans:
            outcome = self.queue.cancel(rec.id, "its GenerationJob no longer exists")
            log.warning("cancelled orphaned queue job", job=rec.id, meta=rec.meta, outcome=str(outcome))
        return len(orphans)

    def run(self, stop: threading.Event) -> None:
        self.cache.seeded.wait()
        while not stop.is_set():
            try:
                self.pass_once()
            except Exception as exc:
                self.metrics.reconcile_errors.labels(stage="reaper").inc()
                log.warning("reaper pass failed", error=str(exc))
            self.metrics.loop_heartbeat.labels(loop="reaper").set_to_current_time()
            stop.wait(self.interval)
