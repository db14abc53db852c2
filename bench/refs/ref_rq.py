"""Reference: rq with its SimpleWorker (no fork per job), burst mode, default settings.

Jobs are enqueued by name (`ref_rq.noop`): rq refuses functions of `__main__`.
"""

from __future__ import annotations

import redis
from refcommon import DoneCounter, parse_args, report, timed_enqueue
from rq import Queue, SimpleWorker


def noop() -> None:
    """The no-op job."""


class CountingWorker(SimpleWorker):
    """A SimpleWorker that counts each job once rq has finished handling it."""

    counter: DoneCounter

    def execute_job(self, job, queue):
        super().execute_job(job, queue)
        self.counter.job_done()


def main() -> None:
    args = parse_args()
    connection = redis.Redis.from_url(args.url)
    queue = Queue("bench", connection=connection)
    enqueue_s = timed_enqueue(lambda i: queue.enqueue("ref_rq.noop"), args.warmup, args.jobs)
    worker = CountingWorker([queue], connection=connection)
    worker.counter = DoneCounter(args.warmup, args.jobs)
    worker.work(burst=True, logging_level="WARNING")
    report("rq", args.jobs, enqueue_s, worker.counter)


if __name__ == "__main__":
    main()
