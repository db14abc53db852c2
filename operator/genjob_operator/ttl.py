"""TTL after finish: finished GenerationJobs are deleted `ttlSecondsAfterFinished` after
`status.finishedAt` (spec value, else settings.operator.ttl_seconds_after_finished;
None keeps them). A level-based loop over the cache, like the Job controller's TTL."""

from __future__ import annotations

import datetime as dt
import threading
import time

import structlog

from genjob_operator.cache import JobCache, JobView
from genjob_operator.kube import KubeWriter
from genjob_operator.metrics import OperatorMetrics

log = structlog.get_logger("genjob.operator.ttl")


def parse_rfc3339(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def ttl_expires_at(view: JobView, default_ttl: int | None) -> float | None:
    """When a finished job should be deleted (epoch seconds), or None (not finished / kept)."""
    if not view.is_final or view.deleting:
        return None
    ttl = view.spec.get("ttlSecondsAfterFinished", default_ttl)
    finished = view.status.get("finishedAt")
    if ttl is None or not finished:
        return None
    try:
        return parse_rfc3339(finished) + int(ttl)
    except ValueError:
        return None


def expired_jobs(views: list[JobView], default_ttl: int | None, now: float) -> list[JobView]:
    out = []
    for v in views:
        at = ttl_expires_at(v, default_ttl)
        if at is not None and at <= now:
            out.append(v)
    return out


class TtlCleaner:
    def __init__(
        self,
        cache: JobCache,
        kube: KubeWriter,
        metrics: OperatorMetrics,
        default_ttl: int | None,
        interval: float = 2.0,
    ) -> None:
        self.cache, self.kube, self.metrics = cache, kube, metrics
        self.default_ttl = default_ttl
        self.interval = interval
        self._asked: dict[str, float] = {}

    def pass_once(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        deleted = 0
        for view in expired_jobs(self.cache.snapshot(), self.default_ttl, now):
            if now - self._asked.get(view.uid, 0) < 30:  # delete already sent; wait for the watch
                continue
            try:
                self.kube.delete_job(view)
                self._asked[view.uid] = now
                deleted += 1
                log.info("deleted finished job after its TTL", job=f"{view.namespace}/{view.name}")
            except Exception as exc:
                self.metrics.reconcile_errors.labels(stage="ttl").inc()
                log.warning("TTL delete failed", job=view.name, error=str(exc))
        if len(self._asked) > 100_000:
            self._asked.clear()
        return deleted

    def run(self, stop: threading.Event) -> None:
        self.cache.seeded.wait()
        while not stop.is_set():
            self.pass_once()
            self.metrics.loop_heartbeat.labels(loop="ttl").set_to_current_time()
            stop.wait(self.interval)
