"""Reference: Celery with the solo pool and a Redis broker, no result backend.

The worker runs in this process after the jobs were sent; a task_postrun signal counts
them, and the last one asks the worker to stop (as its own SIGTERM handler would).
"""

from __future__ import annotations

from celery import Celery
from celery.signals import task_postrun
from celery.worker import state
from refcommon import DoneCounter, parse_args, report, timed_enqueue

args = parse_args()
app = Celery("ref_celery", broker=args.url)
app.conf.update(
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
    broker_connection_retry_on_startup=True,
    worker_send_task_events=False,
)
done = DoneCounter(args.warmup, args.jobs)


@app.task(name="noop")
def noop() -> None:
    """The no-op job."""


@task_postrun.connect
def count(**_: object) -> None:
    if done.job_done():
        state.should_stop = 0  # the worker loop exits cleanly after this task


def main() -> None:
    enqueue_s = timed_enqueue(lambda i: noop.delay(), args.warmup, args.jobs)
    worker = app.Worker(
        pool="solo",
        concurrency=1,
        loglevel="WARNING",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        quiet=True,
    )
    worker.start()
    report("celery", args.jobs, enqueue_s, done)


if __name__ == "__main__":
    main()
