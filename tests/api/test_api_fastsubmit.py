"""The gateway's one-command submit leaves exactly what JobQueue.enqueue leaves, and counts
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
from genjob_api.backends.fastsubmit import FastSubmitter, Submitted
from genjob_api.ratelimit import RateLimitedError, RateLimiter


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

    async def fast() -> tuple[Submitted, ...]:
        client = aredis.Redis.from_url(redis_server.url, decode_responses=True)
        submitter = FastSubmitter(client, RedisKeys("b"), 100_000, 3600)
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


def test_fast_submit_counts_on_the_shared_counter_and_refuses_over_the_limit(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Submits and other routes' hits share one counter per key and window; the request over
    the limit queues nothing and says when to retry."""
    keys = RedisKeys("c")

    async def run() -> tuple[list[Submitted], RateLimitedError]:
        client = aredis.Redis.from_url(redis_server.url, decode_responses=True)
        limiter = RateLimiter(client, keys, default_per_minute=3)
        submitter = FastSubmitter(client, keys, 100_000, 3600)
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


def test_submits_of_one_loop_turn_share_one_write_and_each_gets_its_reply(
    redis_server: RedisServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty concurrent submits go out as one pipeline; each waiter gets its own job's reply;
    error replies in a batch (NOSCRIPT after a flush) leave the connection in step."""
    sends = 0
    send = aredis.connection.AbstractConnection.send_packed_command

    async def counting(self: object, command: object, check_health: bool = True) -> None:
        nonlocal sends
        sends += 1
        await send(self, command, check_health)  # type: ignore[arg-type]

    async def run() -> tuple[list[Submitted], list[Submitted]]:
        client = aredis.Redis.from_url(redis_server.url, decode_responses=True)
        submitter = FastSubmitter(client, RedisKeys("d"), 100_000, 3600)
        await submitter.submit(NewJob(id="j-0", tier="pro", spec={}), "t")  # loads the script
        monkeypatch.setattr(aredis.connection.AbstractConnection, "send_packed_command", counting)
        jobs = [NewJob(id=f"j-{i}", tier="pro", spec={}) for i in range(1, 21)]
        first = await asyncio.gather(*[submitter.submit(job, "t") for job in jobs])
        monkeypatch.undo()
        await client.script_flush()
        more = [NewJob(id=f"k-{i}", tier="pro", spec={}) for i in range(5)]
        second = await asyncio.gather(*[submitter.submit(job, "t") for job in more])
        await client.aclose()
        return list(first), list(second)

    first, second = asyncio.run(run())
    assert sends == 1
    assert [s.position for s in first] == list(range(1, 21))  # each its own reply, in order
    assert all(s.result.created for s in first + second)
    pending = redis_client.lrange("d:pending:pro", 0, -1)
    assert pending[:21] == [f"j-{i}" for i in range(21)]
    assert sorted(pending[21:]) == [f"k-{i}" for i in range(5)]  # retried one by one after NOSCRIPT


def test_a_batch_fails_together_when_redis_is_unreachable() -> None:
    """Every submit of a batch that cannot be sent gets the connection error (the route
    answers 503), none hangs."""
    from genjob.localredis import free_port

    async def run() -> list[BaseException | Submitted]:
        client = aredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", decode_responses=True)
        submitter = FastSubmitter(client, RedisKeys("e"), 100_000, 3600)
        submitter.sha = "0" * 40  # skip loading the script: the batch itself must fail
        jobs = [NewJob(id=f"j-{i}", tier="pro", spec={}) for i in range(5)]
        outcomes = await asyncio.wait_for(
            asyncio.gather(*[submitter.submit(job, "t") for job in jobs], return_exceptions=True), 30
        )
        await client.aclose()
        return list(outcomes)

    outcomes = asyncio.run(run())
    assert all(isinstance(o, redis.ConnectionError) for o in outcomes), outcomes


def test_a_submit_cancelled_before_its_batch_left_queues_nothing(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """A request that goes away (client disconnect) before its command was sent creates no job;
    the rest of its batch is unaffected."""

    async def run() -> tuple[Submitted, bool]:
        client = aredis.Redis.from_url(redis_server.url, decode_responses=True)
        submitter = FastSubmitter(client, RedisKeys("f"), 100_000, 3600)
        await submitter.submit(NewJob(id="j-0", tier="pro", spec={}), "t")
        kept = asyncio.ensure_future(submitter.submit(NewJob(id="j-1", tier="pro", spec={}), "t"))
        dropped = asyncio.ensure_future(submitter.submit(NewJob(id="j-2", tier="pro", spec={}), "t"))
        await asyncio.sleep(0)  # both joined the batch; its sender runs on the next turn
        dropped.cancel()
        done = await kept
        await asyncio.gather(dropped, return_exceptions=True)
        await client.aclose()
        return done, dropped.cancelled()

    done, cancelled = asyncio.run(run())
    assert cancelled and done.result.created and done.position == 1
    assert redis_client.lrange("f:pending:pro", 0, -1) == ["j-0", "j-1"]
    assert not redis_client.exists("f:job:j-2")
