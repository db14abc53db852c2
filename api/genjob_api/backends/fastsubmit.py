"""The submit hot path of local mode in one Redis round trip, on the asyncio client.

`JobQueue.enqueue` (sync, one script call) plus the reads the answer needs (queue
position, active workers) and the tenant index update would be several round trips from
a threadpool; measured on the gateway benchmark that halves throughput. Here the same
enqueue script (`genjob/queue/lua/enqueue.lua`, same keys and arguments as
`JobQueue.enqueue`) is sent by EVALSHA in one pipeline with LPOS, ZCOUNT and ZADD.

`enqueue_call` mirrors `JobQueue.enqueue`'s key and argument lists; the test
`test_api_fastsubmit.py` checks that both leave identical records. (Proposed to the
lead: a core `JobQueue.enqueue_call(job)` returning keys and args, so this mirror goes.)
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import NoScriptError

from genjob.keys import RedisKeys
from genjob.queue import EnqueueResult, JobState, NewJob
from genjob.queue.records import check_job_id

WORKER_WINDOW_MS = 60_000


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def enqueue_call(keys: RedisKeys, job: NewJob, events_max_length: int) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of the enqueue script for a job (as JobQueue.enqueue builds them)."""
    check_job_id(job.id)
    k = keys
    return (
        [k.job(job.id), k.pending(job.tier), k.queued_at(job.tier), k.wake(job.tier), k.events],
        [
            job.id,
            job.tier,
            _json(job.spec),
            job.priority,
            job.max_attempts,
            job.batch_key,
            _json(job.meta),
            k.job_prefix,
            events_max_length,
        ],
    )


class FastSubmitter:
    def __init__(
        self,
        client: aredis.Redis,
        keys: RedisKeys,
        enqueue_source: str,
        events_max_length: int,
        retention_seconds: int,
    ) -> None:
        self.client = client
        self.keys = keys
        self.script = client.register_script(enqueue_source)
        self.events_max_length = events_max_length
        self.retention_ms = retention_seconds * 1000

    async def submit(self, job: NewJob, tenant: str) -> tuple[EnqueueResult, int | None, int, int]:
        """Enqueue; return (result, 0-based position or None if claimed already, workers, now ms)."""
        keys, args = enqueue_call(self.keys, job, self.events_max_length)
        k = self.keys
        now_ms = int(time.time() * 1000)
        index = k.tenant_jobs(tenant)
        for attempt in (1, 2):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.evalsha(self.script.sha, len(keys), *keys, *args)
                # A priority-0 job was appended: search from the tail (O(1)); a priority job from the head.
                pipe.lpos(k.pending(job.tier), job.id, rank=-1 if job.priority == 0 else 1)
                pipe.zcount(k.workers, now_ms - WORKER_WINDOW_MS, "+inf")
                pipe.zadd(index, {job.id: now_ms}, nx=True)
                # Entries older than the job records' retention point at expired jobs.
                pipe.zremrangebyscore(index, "-inf", now_ms - self.retention_ms)
                try:
                    (created, state), position, workers, _, _ = await pipe.execute()
                except NoScriptError:
                    if attempt == 2:
                        raise
                    await self.client.script_load(self.script.script)  # Redis restarted or flushed
                    continue
            return EnqueueResult(bool(created), JobState(state)), position, int(workers), now_ms
        raise AssertionError("unreachable")
