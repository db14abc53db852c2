"""Fault test: consumers SIGKILLed at random while holding jobs lose nothing.

500 jobs, 4 consumer processes, one of them killed -9 (and replaced) every ~50 ms, the
reaper running. Every job must end in exactly one final state; a job may run more than
once only when its lease expired (each extra run is matched by a reaped attempt).
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import redis

from genjob.keys import RedisKeys
from genjob.localredis import RedisServer
from genjob.queue import JobQueue, JobState, NewJob
from genjob.settings import QueueSettings

CONSUMER = Path(__file__).with_name("queue_fault_consumer.py")
JOBS = 500
CONSUMERS = 4


def test_sigkilled_consumers_lose_no_job(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    keys = RedisKeys("fault")
    queue = JobQueue(redis_client, keys, ["free"], QueueSettings(lease_seconds=1.0))
    for i in range(JOBS):
        queue.enqueue(NewJob(f"job-{i}", "free", {"n": i}, max_attempts=20))

    stop = threading.Event()

    def reaper() -> None:
        while not stop.is_set():
            queue.reap()
            stop.wait(0.2)

    reaper_thread = threading.Thread(target=reaper, daemon=True)
    reaper_thread.start()
    spawned = 0

    def spawn() -> subprocess.Popen[bytes]:
        nonlocal spawned
        spawned += 1
        return subprocess.Popen([sys.executable, str(CONSUMER), redis_server.url, f"w{spawned}"])

    procs = [spawn() for _ in range(CONSUMERS)]
    kills = 0
    rng = random.Random(7)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            stats = queue.stats(["free"])[0]
            if stats.pending + stats.inflight + stats.delayed == 0:
                break
            time.sleep(0.05)
            if kills < 60 and stats.inflight > 0:
                victim = procs.pop(rng.randrange(len(procs)))
                victim.kill()
                victim.wait()
                kills += 1
                procs.append(spawn())
    finally:
        stop.set()
        for p in procs:
            p.kill()
            p.wait()
        reaper_thread.join()

    records = queue.get_many([f"job-{i}" for i in range(JOBS)])
    states = Counter(r.state for r in records if r is not None)
    runs = Counter(entry.split(":")[0] for entry in redis_client.lrange("fault:runs", 0, -1))
    duplicates = {job_id: n for job_id, n in runs.items() if n > 1}
    print(
        f"jobs={JOBS} kills={kills} consumers_spawned={spawned} states={dict(states)} "
        f"jobs_run_more_than_once={len(duplicates)} extra_runs={sum(n - 1 for n in duplicates.values())}"
    )

    assert None not in records
    assert states == Counter({JobState.SUCCEEDED: JOBS}), "every job ends succeeded, none lost or stuck"
    assert kills > 0
    for record in records:
        assert record is not None
        # Each extra run needs a reaped lease (attempts counts reaps): no duplicate without an expiry.
        assert runs[record.id] - 1 <= record.attempts, (
            f"{record.id} ran {runs[record.id]}x, {record.attempts} reaps"
        )
        # The result is the latest claim's: a reaped holder never overwrote it.
        assert record.result is not None and record.result["lease"] == str(record.attempts + 1)
    stats = queue.stats(["free"])[0]
    assert (stats.pending, stats.inflight, stats.delayed, stats.dead) == (0, 0, 0, 0)
