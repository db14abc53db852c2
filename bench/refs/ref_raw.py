"""Reference: the raw redis-py loop, LPUSH to enqueue, LMOVE to claim, LREM to complete.

One client, no scripts, no pipelining: three round trips per job, the floor a reliable
list queue without batching can reach. Runs with the project's own interpreter.
"""

from __future__ import annotations

import redis
from refcommon import DoneCounter, parse_args, report, timed_enqueue

PENDING, PROCESSING = "raw:pending", "raw:processing"


def main() -> None:
    args = parse_args()
    client = redis.Redis.from_url(args.url, decode_responses=True)
    client.delete(PENDING, PROCESSING)
    enqueue_s = timed_enqueue(lambda i: client.lpush(PENDING, f"job-{i}"), args.warmup, args.jobs)
    done = DoneCounter(args.warmup, args.jobs)
    while not done.finished:
        job_id = client.lmove(PENDING, PROCESSING, "RIGHT", "LEFT")
        if job_id is None:
            raise SystemExit(f"raw: the list ran dry after {done.count} jobs")
        if client.lrem(PROCESSING, 1, job_id) != 1:
            raise SystemExit(f"raw: {job_id} was not on the processing list")
        done.job_done()
    report("raw", args.jobs, enqueue_s, done)


if __name__ == "__main__":
    main()
