"""A consumer process for the fault test: claims, records that it started, works briefly, completes.

Run as `python queue_fault_consumer.py REDIS_URL WORKER_NAME`; the test SIGKILLs it at random.
"""

from __future__ import annotations

import random
import sys
import time

import redis

from genjob.keys import RedisKeys
from genjob.queue import JobQueue
from genjob.settings import QueueSettings

RUNS_KEY = "fault:runs"


def main(url: str, worker: str) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    queue = JobQueue(client, RedisKeys("fault"), ["free"], QueueSettings(lease_seconds=1.0))
    while True:
        for job in queue.claim(["free"], worker, block_seconds=1):
            client.rpush(RUNS_KEY, f"{job.id}:{job.lease}")
            time.sleep(random.uniform(0.002, 0.02))
            queue.complete(job, {"worker": worker, "lease": job.lease})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
