"""Local mode's submit: one Redis round trip (one script) per submit.

`genjob_api/lua/submit.lua` counts the request against the API key's rate limit,
enqueues exactly as `JobQueue.enqueue` does (same Lua function, same arguments from
`genjob.queue.core.enqueue_call`), indexes the job under its tenant, and answers the
job's queue position and the tier's active worker count: everything the 202 needs.
The script is registered on the asyncio client (redis-py's `register_script`: EVALSHA,
loading the script again if Redis lost it). A connection error reaches the route as a
503 (errors.py); retrying is the client's call (an Idempotency-Key makes it safe).

With `redis.wait_replicas`, the script and a `WAIT` go out in one pipeline on one connection
(WAIT counts the replicas that have this connection's writes): the answer comes once the
job is on that many replicas, or NotReplicatedError (a 503) after `redis.wait_timeout_ms`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aredis
from redis.exceptions import NoScriptError

from genjob.errors import NotReplicatedError
from genjob.keys import RedisKeys
from genjob.queue import EnqueueResult, JobState, NewJob
from genjob.queue.core import ACTIVE_WORKER_WINDOW_MS, enqueue_call
from genjob_api.ratelimit import (
    COUNTER_TTL_SECONDS,
    RateCounter,
    RateDecision,
    RateLimitedError,
    gateway_script,
)


class TenantQueueFullError(Exception):
    """The tenant has its cap of unfinished jobs (api.max_queued_per_tenant); nothing was queued."""

    def __init__(self, tenant: str, unfinished: int, cap: int) -> None:
        super().__init__(
            f"tenant {tenant!r} has {unfinished} unfinished jobs, its cap is {cap}; "
            "retry when some have finished (or cancel some)"
        )


@dataclass(frozen=True)
class Submitted:
    result: EnqueueResult
    position: int | None  # 0-based; None when a worker claimed the job already
    workers: int
    now_ms: int
    rate: RateDecision | None  # None when the request was not counted here


class SubmitScript:
    def __init__(
        self,
        client: aredis.Redis,
        keys: RedisKeys,
        events_max_length: int,
        retention_seconds: int,
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
        max_unfinished_per_tenant: int = 0,
    ) -> None:
        self.client = client
        self.keys = keys
        self.script = client.register_script(gateway_script("submit"))
        self.events_max_length = events_max_length
        self.retention_ms = retention_seconds * 1000
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.max_unfinished_per_tenant = max_unfinished_per_tenant

    async def _run(self, keys: list[str], args: list[Any]) -> list[Any]:
        if not self.wait_replicas:
            return cast("list[Any]", await self.script(keys=keys, args=args))
        reply, acknowledged = await self._run_and_wait(keys, args)
        if isinstance(reply, NoScriptError):  # a primary without the script (after a failover)
            self.script.sha = await self.client.script_load(self.script.script)
            reply, acknowledged = await self._run_and_wait(keys, args)
        for answer in (reply, acknowledged):
            if isinstance(answer, Exception):
                raise answer
        if acknowledged < self.wait_replicas:
            raise NotReplicatedError(acknowledged, self.wait_replicas, self.wait_timeout_ms)
        return cast("list[Any]", reply)

    async def _run_and_wait(self, keys: list[str], args: list[Any]) -> list[Any]:
        """EVALSHA and WAIT in one round trip on one connection (raw EVALSHA: a pipeline that
        knows the script would ask SCRIPT EXISTS first, a second round trip)."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.evalsha(self.script.sha, len(keys), *keys, *args)
            pipe.wait(self.wait_replicas, self.wait_timeout_ms)
            return await pipe.execute(raise_on_error=False)

    async def submit(self, job: NewJob, tenant: str, rate: RateCounter | None = None) -> Submitted:
        """Enqueue (counting the request on `rate` first, if given); RateLimitedError when over."""
        keys, args = enqueue_call(self.keys, job, self.events_max_length)
        keys += [
            self.keys.tier_workers(job.tier),
            self.keys.tenant_jobs(tenant),
            # Unused without a rate, but declared: Redis checks every declared key against the
            # caller's ACL user, so the placeholder stays inside the gateway's key patterns.
            rate.key if rate else self.keys.rate_limit("unused", 0),
            self.keys.tenant_active(tenant),
        ]
        args += [
            rate.limit if rate else 0,
            COUNTER_TTL_SECONDS,
            ACTIVE_WORKER_WINDOW_MS,
            self.retention_ms,
            self.max_unfinished_per_tenant,
        ]
        reply = await self._run(keys, args)
        decision = RateDecision.of(int(reply[1]), rate.limit, rate.now) if rate else None
        if reply[0] == -1:
            raise TenantQueueFullError(tenant, int(reply[2]), self.max_unfinished_per_tenant)
        if not reply[0]:
            assert decision is not None  # only a counted request can be over the limit
            raise RateLimitedError(decision)
        _, _, created, state, position, workers, now_ms = reply
        return Submitted(
            EnqueueResult(bool(created), JobState(state)),
            None if position < 0 else int(position),
            int(workers),
            int(now_ms),
            decision,
        )
