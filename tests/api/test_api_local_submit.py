"""Local mode's one-script submit leaves exactly what JobQueue.enqueue leaves, and counts
the request against the key's rate limit in the same script."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aredis

from genjob.keys import RedisKeys
from genjob.localredis import RedisServer
from genjob.queue import JobQueue, NewJob
from genjob.settings import GenjobSettings
from genjob_api.backends.local_submit import SubmitScript, Submitted
from genjob_api.ratelimit import RateLimitedError, RateLimiter


def _normalised(client: redis.Redis, prefix: str, job_id: str) -> dict[str, object]:
    job = client.hgetall(f"{prefix}:job:{job_id}")
    job.pop("enqueued_at")
    return {"job": job, "pending": client.lrange(f"{prefix}:pending:pro", 0, -1)}


def test_submit_script_matches_jobqueue_enqueue(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """Same hash fields, same pending list, same event; a repeat is a no-op; a flushed script
    cache is recovered from."""
    tiers = list(GenjobSettings().tiers)
    job = NewJob(id="j-1", tier="pro", spec={"prompt": "x", "tier": "pro"}, priority=0, meta={"tenant": "t"})
    JobQueue(redis_client, RedisKeys("a"), tiers).enqueue(job)

    async def fast() -> tuple[Submitted, ...]:
        client = aredis.Redis.from_url(redis_server.url, decode_responses=True)
        submitter = SubmitScript(client, RedisKeys("b"), 100_000, 3600)
        first = await submitter.submit(job, "t")
        again = await submitter.submit(job, "t")
        await client.script_flush()
        other = await submitter.submit(NewJob(id="j-2", tier="pro", spec={}, meta={}), "t")
        await client.aclose()
        return first, again, other

    first, again, other = asyncio.run(fast())
    assert first.result.created and first.position == 0 and first.rate is None
    assert not again.result.created and again.result.state == "queued"
    assert other.result.created and other.position == 1 and other.workers == 0
    b = _normalised(redis_client, "b", "j-1")
    assert b["job"] == _normalised(redis_client, "a", "j-1")["job"]
    assert b["pending"] == ["j-1", "j-2"]
    a_event = redis_client.xrange("a:events")[0][1]
    b_event = redis_client.xrange("b:events")[0][1]
    assert {k: v for k, v in a_event.items() if k != "ts"} == {k: v for k, v in b_event.items() if k != "ts"}
    assert redis_client.zrange("b:tenant-jobs:t", 0, -1) == ["j-1", "j-2"]
    assert not redis_client.keys("b:ratelimit:*")  # not counted without a counter


def test_submit_script_counts_on_the_shared_counter_and_refuses_over_the_limit(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Submits and other routes' hits share one counter per key and window; the request over
    the limit queues nothing and says when to retry."""
    keys = RedisKeys("c")

    async def run() -> tuple[list[Submitted], RateLimitedError]:
        client = aredis.Redis.from_url(redis_server.url, decode_responses=True)
        limiter = RateLimiter(client, keys, default_per_minute=3)
        submitter = SubmitScript(client, keys, 100_000, 3600)
        done = [await submitter.submit(NewJob(id="j-1", tier="pro", spec={}), "t", limiter.counter("k"))]
        assert (await limiter.hit("k")).remaining == 1
        done.append(await submitter.submit(NewJob(id="j-2", tier="pro", spec={}), "t", limiter.counter("k")))
        with pytest.raises(RateLimitedError) as refused:
            await submitter.submit(NewJob(id="j-3", tier="pro", spec={}), "t", limiter.counter("k"))
        await client.aclose()
        return done, refused.value

    done, refused = asyncio.run(run())
    assert [d.rate.remaining for d in done if d.rate] == [2, 0]
    assert not refused.decision.allowed and 1 <= refused.decision.retry_after_seconds <= 60
    assert redis_client.lrange("c:pending:pro", 0, -1) == ["j-1", "j-2"]
    assert not redis_client.exists("c:job:j-3")
    (counter,) = redis_client.keys("c:ratelimit:k:*")
    assert redis_client.get(counter) == "4" and 0 < redis_client.ttl(counter) <= 61


def test_a_submit_fails_with_the_connection_error_when_redis_is_unreachable() -> None:
    """The route turns it into a 503 (errors.py); nothing hangs."""
    from genjob.localredis import free_port

    async def run() -> None:
        client = aredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", decode_responses=True)
        submitter = SubmitScript(client, RedisKeys("e"), 100_000, 3600)
        try:
            with pytest.raises(redis.ConnectionError):
                await asyncio.wait_for(submitter.submit(NewJob(id="j-1", tier="pro", spec={}), "t"), 30)
        finally:
            await client.aclose()

    asyncio.run(run())
