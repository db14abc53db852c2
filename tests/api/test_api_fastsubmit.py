"""The gateway's one-round-trip submit leaves exactly what JobQueue.enqueue leaves."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aredis

from genjob.keys import RedisKeys
from genjob.localredis import RedisServer
from genjob.queue import JobQueue, NewJob
from genjob.settings import GenjobSettings
from genjob_api.backends.fastsubmit import FastSubmitter


def _normalised(client: redis.Redis, prefix: str, job_id: str) -> dict[str, object]:
    job = client.hgetall(f"{prefix}:job:{job_id}")
    job.pop("enqueued_at")
    return {"job": job, "pending": client.lrange(f"{prefix}:pending:pro", 0, -1)}


def test_fast_submit_matches_jobqueue_enqueue(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """Same hash fields, same pending list, same event; a repeat is a no-op; a flushed script
    cache is recovered from."""
    tiers = list(GenjobSettings().tiers)
    job = NewJob(id="j-1", tier="pro", spec={"prompt": "x", "tier": "pro"}, priority=0, meta={"tenant": "t"})
    JobQueue(redis_client, RedisKeys("a"), tiers).enqueue(job)

    async def fast() -> tuple[object, ...]:
        client = aredis.Redis.from_url(redis_server.url, decode_responses=True)
        queue = JobQueue(redis_client, RedisKeys("b"), tiers)
        submitter = FastSubmitter(client, RedisKeys("b"), queue.scripts.enqueue.script, 100_000, 3600)
        first = await submitter.submit(job, "t")
        again = await submitter.submit(job, "t")
        await client.script_flush()
        other = await submitter.submit(NewJob(id="j-2", tier="pro", spec={}, meta={}), "t")
        await client.aclose()
        return first, again, other

    first, again, other = asyncio.run(fast())
    assert first[0].created and first[1] == 0 and not again[0].created  # type: ignore[attr-defined,index]
    assert other[0].created and other[1] == 1  # type: ignore[attr-defined,index]
    b = _normalised(redis_client, "b", "j-1")
    assert b["job"] == _normalised(redis_client, "a", "j-1")["job"]
    assert b["pending"] == ["j-1", "j-2"]
    a_event = redis_client.xrange("a:events")[0][1]
    b_event = redis_client.xrange("b:events")[0][1]
    assert {k: v for k, v in a_event.items() if k != "ts"} == {k: v for k, v in b_event.items() if k != "ts"}
    assert redis_client.zrange("b:tenant-jobs:t", 0, -1) == ["j-1", "j-2"]
