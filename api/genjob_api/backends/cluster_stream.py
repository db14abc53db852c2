"""Cluster mode's event streams: one Kubernetes read, then the job's queue record in Redis.

An event stream polls its job every 0.25 s (sse.job_events). Reading the GenerationJob at each
poll would cost the API server one GET per open stream per poll; instead a stream reads the
object once (it is the caller's; its uid) and then follows the job's queue record (the
operator queues the job under the object's uid), which workers update at every progress step
and at the end. While the queue has no record (the job waits for admission, or was refused),
the object is read again at most every `refresh_seconds`, so a refusal (Failed on the object)
or a deletion still reaches the stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from genjob.queue import JobQueue
from genjob_api.backends import WaitEstimator, record_view
from genjob_api.models import Generation

REFRESH_SECONDS = 10.0


class ClusterStream:
    """The `read` of one job's event stream (see the module docstring)."""

    def __init__(
        self,
        job_id: str,
        read_object: Callable[[], tuple[Generation, str] | None],
        queue: JobQueue,
        estimator: WaitEstimator,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.read_object = read_object  # (the object's view, its uid), None when gone or not the caller's
        self.queue, self.estimator = queue, estimator
        self.refresh_seconds, self.clock = refresh_seconds, clock
        self.uid: str | None = None
        self.last: Generation | None = None
        self.read_at = 0.0

    def _from_queue(self) -> Generation | None:
        record = self.queue.get(self.uid) if self.uid else None
        return None if record is None else record_view(record, self.estimator, job_id=self.job_id)

    def __call__(self) -> Generation | None:
        view = self._from_queue()
        if view is not None:
            return view
        if self.last is None or self.clock() - self.read_at >= self.refresh_seconds:
            found = self.read_object()
            self.read_at = self.clock()
            if found is None:
                return None
            self.last, self.uid = found
            view = self._from_queue()
        return view or self.last
