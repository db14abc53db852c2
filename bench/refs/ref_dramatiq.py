"""Reference: Dramatiq with its Redis broker, one worker process with `--threads` threads.

Dramatiq's Redis consumer fetches up to its prefetch count per round trip and acks each
message from its consumer thread; a job counts as done when its worker thread has processed
it (after_process_message), so the last acks may land just after the clock stops. The default prefetch is
2 x threads, and a consumer whose prefetch is used up sleeps a backoff (5 ms and more)
before it fetches again, which dominates with one thread; `--tuned` prefetches 64.
"""

from __future__ import annotations

import threading

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware
from refcommon import DoneCounter, parse_args, report, timed_enqueue

args = parse_args()
done = DoneCounter(args.warmup, args.jobs)
all_done = threading.Event()
lock = threading.Lock()


class CountDone(Middleware):
    """Counts processed messages and wakes the main thread when all are done."""

    def after_process_message(self, broker, message, *, result=None, exception=None):
        with lock:
            if done.job_done():
                all_done.set()


broker = RedisBroker(url=args.url)
broker.add_middleware(CountDone())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop() -> None:
    """The no-op job."""


def main() -> None:
    enqueue_s = timed_enqueue(lambda i: noop.send(), args.warmup, args.jobs)
    worker = dramatiq.Worker(broker, worker_threads=args.threads)
    if args.tuned:
        worker.queue_prefetch = 64
    worker.start()
    finished = all_done.wait(timeout=600)
    worker.stop()
    if not finished:
        raise SystemExit(f"dramatiq: only {done.count} of {done.total} jobs finished")
    report(f"dramatiq_{args.threads}" + ("_prefetch64" if args.tuned else ""), args.jobs, enqueue_s, done)


if __name__ == "__main__":
    main()
