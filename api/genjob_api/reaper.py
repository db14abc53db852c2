"""Local mode's lease reaper: with no operator, the gateway reaps the queue itself.

In a cluster the operator runs `JobQueue.reap()`; in local mode (`genjob up`, the quickstart,
a gateway in front of workers without Kubernetes) nothing else would, and a worker killed
mid-job (kill -9, OOM, a closed laptop) would leave its job `running` forever. So a local
gateway runs the same call every `operator.reaper_interval_seconds` in a background
thread: expired leases go back to the head of their queue (or to the dead-letter list past
`maxAttempts`). `reap` is atomic per tier, so several gateway replicas may all run it.
"""

from __future__ import annotations

import threading

import redis
import structlog

from genjob.queue import JobQueue

log = structlog.get_logger("genjob.api.reaper")


class LeaseReaper:
    """Calls `queue.reap()` every `interval_seconds` until stopped."""

    def __init__(self, queue: JobQueue, interval_seconds: float) -> None:
        self.queue = queue
        self.interval_seconds = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lease-reaper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def reap_once(self) -> None:
        try:
            result = self.queue.reap()
        except redis.RedisError as exc:
            log.warning("lease reaper cannot reach Redis; retrying", error=str(exc))
            return
        if result.requeued or result.dead_lettered or result.cancelled:
            log.info(
                "reaped expired leases",
                requeued=result.requeued,
                dead_lettered=result.dead_lettered,
                cancelled=result.cancelled,
                promoted=result.promoted,
            )

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self.reap_once()
