"""The gateway's Redis work under its own ACL user (genjob/redis_acl.py) on a real redis-server:
submit (with and without a rate counter), idempotency records, rate limits, the tenant index,
and what the worker's user may not touch of it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis

from genjob.keys import RedisKeys
from genjob.localredis import RedisServer
from genjob.queue import NewJob
from genjob.redis_acl import setuser_commands
from genjob_api.backends.local_submit import SubmitScript
from genjob_api.idempotency import IdempotencyStore
from genjob_api.ratelimit import RateLimiter

KEYS = RedisKeys("aclgw")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("acl-gateway"))).start()
    for command in setuser_commands(KEYS):
        server.client().execute_command(*command, "on", f">pw-{command[2]}")
    yield server
    server.stop()


def as_user(server: RedisServer, component: str) -> aredis.Redis:
    user = f"genjob-{component}"
    return aredis.Redis.from_url(server.url, username=user, password=f"pw-{user}", decode_responses=True)


def test_the_gateway_submits_with_its_own_user(server: RedisServer) -> None:
    """Before the placeholder key, a submit without a rate counter declared the key "" and the
    gateway's user was refused (NOPERM): Redis checks every declared key of a script."""

    async def scenario() -> list[object]:
        client = as_user(server, "gateway")
        submit = SubmitScript(client, KEYS, 1000, 3600, max_unfinished_per_tenant=10)
        limiter = RateLimiter(client, KEYS, 60)
        idem = IdempotencyStore(client, KEYS)
        job = NewJob(id="gw-1", tier="free", spec={"prompt": "a"})
        counted = await submit.submit(job, "alice", limiter.counter("key-1"))
        uncounted = await submit.submit(NewJob(id="gw-2", tier="free", spec={"prompt": "b"}), "alice")
        first = await idem.claim("key-1", "idem-1", "fingerprint", "gw-3")
        again = await idem.claim("key-1", "idem-1", "fingerprint", "gw-4")
        await idem.release("key-1", "idem-1")
        hit = await limiter.hit("key-1")
        listed = await client.zrevrange(KEYS.tenant_jobs("alice"), 0, -1)
        await client.aclose()
        return [
            counted.result.created,
            uncounted.result.created,
            first.job_id,
            again.job_id,
            hit.allowed,
            listed,
        ]

    assert asyncio.run(scenario()) == [True, True, "gw-3", "gw-3", True, ["gw-2", "gw-1"]]


def test_the_worker_cannot_read_or_forge_the_gateways_records(server: RedisServer) -> None:
    async def scenario() -> None:
        worker = as_user(server, "worker")
        try:
            for attempt in (
                worker.get(KEYS.idempotency("key-1", "x")),
                worker.set(KEYS.rate_limit("key-1", 1), 0),
                worker.zrevrange(KEYS.tenant_jobs("alice"), 0, -1),
                worker.smembers(KEYS.tenant_active("alice")),
            ):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    await attempt
        finally:
            await worker.aclose()

    asyncio.run(scenario())
