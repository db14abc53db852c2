"""Local mode's submit: one Redis round trip (one script) per submit.

`genjob/queue/lua/submit.lua` counts the request against the API key's rate limit,
enqueues exactly as `JobQueue.enqueue` does (same Lua function, same arguments from
`genjob.queue.core.enqueue_call`), indexes the job under its tenant, and answers the
job's queue position and the tier's active worker count: everything the 202 needs.
The script is registered on the asyncio client (redis-py's `register_script`: EVALSHA,
loading the script again if Redis lost it). A connection error reaches the route as a
503 (errors.py); retrying is the client's call (an Idempotency-Key makes it safe).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aredis

from genjob.keys import RedisKeys
from genjob.queue import EnqueueResult, JobState, NewJob
from genjob.queue.core import enqueue_call
from genjob.queue.scripts import script_source
from genjob_api.ratelimit import WINDOW_SECONDS, RateCounter, RateDecision, RateLimitedError

WORKER_WINDOW_MS = 60_000


@dataclass(frozen=True)
class Submitted:
    result: EnqueueResult
    position: int | None  # 0-based; None when a worker claimed the job already
    workers: int
    now_ms: int
    rate: RateDecision | None  # None when the request was not counted here


class SubmitScript:
    def __init__(
        self, client: aredis.Redis, keys: RedisKeys, events_max_length: int, retention_seconds: int
    ) -> None:
        self.keys = keys
        self.script = client.register_script(script_source("submit"))
        self.events_max_length = events_max_length
        self.retention_ms = retention_seconds * 1000

    async def submit(self, job: NewJob, tenant: str, rate: RateCounter | None = None) -> Submitted:
        """Enqueue (counting the request on `rate` first, if given); RateLimitedError when over."""
        keys, args = enqueue_call(self.keys, job, self.events_max_length)
        keys += [
            self.keys.tier_workers(job.tier),
            self.keys.tenant_jobs(tenant),
            rate.key if rate else "",  # "": unused
        ]
        args += [rate.limit if rate else 0, WINDOW_SECONDS + 1, WORKER_WINDOW_MS, self.retention_ms]
        reply = await self.script(keys=keys, args=args)
        decision = RateDecision.of(int(reply[1]), rate.limit, rate.now) if rate else None
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
