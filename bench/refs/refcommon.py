"""Shared by the reference drivers (stdlib only: each driver runs in its library's own venv).

The protocol every driver follows, so the references are measured like genjob:
enqueue `--warmup` jobs (untimed), then `--jobs` jobs (timed: `enqueue_s`); then start the
library's worker on that queue; the drain clock starts when the last warm-up job has
finished and stops when the last timed job has (`drain_s`). The worker and the producer
are the same process but never run at once. The driver prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="redis URL of the bench's redis-server")
    parser.add_argument("--jobs", type=int, required=True, help="timed jobs")
    parser.add_argument("--warmup", type=int, required=True, help="untimed jobs run first")
    parser.add_argument("--threads", type=int, default=1, help="worker threads (dramatiq)")
    parser.add_argument(
        "--tuned", action="store_true", help="the library's throughput knob instead of its default"
    )
    args = parser.parse_args()
    if args.jobs < 1 or args.warmup < 1 or args.threads < 1:
        parser.error("--jobs, --warmup and --threads must be at least 1")
    return args


class DoneCounter:
    """Counts finished jobs; records when the warm-up ended and when the last timed job did."""

    def __init__(self, warmup: int, jobs: int) -> None:
        self.warmup, self.total = warmup, warmup + jobs
        self.count = 0
        self.warm_end: float | None = None
        self.end: float | None = None

    def job_done(self) -> bool:
        """Count one finished job; True once every job has finished."""
        self.count += 1
        if self.count == self.warmup:
            self.warm_end = time.perf_counter()
        if self.count == self.total:
            self.end = time.perf_counter()
        return self.count >= self.total

    @property
    def finished(self) -> bool:
        return self.end is not None


def timed_enqueue(enqueue, warmup: int, jobs: int) -> float:
    """Enqueue the warm-up jobs untimed, then the timed ones; seconds spent on the timed ones."""
    for i in range(warmup):
        enqueue(i)
    started = time.perf_counter()
    for i in range(warmup, warmup + jobs):
        enqueue(i)
    return time.perf_counter() - started


def report(name: str, jobs: int, enqueue_s: float, done: DoneCounter) -> None:
    """Print the driver's result line; a run that did not finish every job is an error."""
    if not done.finished or done.warm_end is None or done.end is None:
        raise SystemExit(f"{name}: only {done.count} of {done.total} jobs finished")
    drain_s = done.end - done.warm_end
    print(
        json.dumps(
            {
                "name": name,
                "jobs": jobs,
                "completed": done.count - done.warmup,
                "enqueue_s": enqueue_s,
                "drain_s": drain_s,
            }
        ),
        flush=True,
    )
