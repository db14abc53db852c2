"""The submit hot path of local mode: one Redis command on the asyncio client.

`genjob/queue/lua/submit.lua` counts the request against the API key's rate limit,
enqueues exactly as `JobQueue.enqueue` does (same Lua function, same arguments from
`genjob.queue.core.enqueue_call`), and answers the job's queue position and the active
worker count, indexing the job under its tenant on the way.

One EVALSHA, packed by hiredis (C) and sent on a pooled connection: redis-py's asyncio
client packs its ~25 arguments in Python and wraps each command in retry and pipeline
bookkeeping, which cost more CPU on this path than the round trip itself (measured:
bench/gateway.py, docs/performance.md). No automatic retry: a connection error reaches
the caller as a 503 (errors.py); retrying is the client's call (an Idempotency-Key makes
it safe).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hiredis
import redis.asyncio as aredis
from redis.exceptions import NoScriptError, ResponseError

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


class FastSubmitter:
    def __init__(
        self, client: aredis.Redis, keys: RedisKeys, events_max_length: int, retention_seconds: int
    ) -> None:
        self.client = client
        self.keys = keys
        self.source = script_source("submit")
        self.sha: str | None = None
        self.events_max_length = events_max_length
        self.retention_ms = retention_seconds * 1000

    async def submit(self, job: NewJob, tenant: str, rate: RateCounter | None = None) -> Submitted:
        """Enqueue (counting the request on `rate` first, if given); RateLimitedError when over."""
        keys, args = enqueue_call(self.keys, job, self.events_max_length)
        keys += [self.keys.workers, self.keys.tenant_jobs(tenant), rate.key if rate else ""]  # "": unused
        args += [rate.limit if rate else 0, WINDOW_SECONDS + 1, WORKER_WINDOW_MS, self.retention_ms]
        reply = await self._run(keys, args)
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

    async def _run(self, keys: list[str], args: list[Any]) -> list[Any]:
        if self.sha is None:
            self.sha = await self.client.script_load(self.source)
        try:
            return await self._evalsha(keys, args)
        except NoScriptError:  # Redis restarted or its script cache was flushed
            self.sha = await self.client.script_load(self.source)
            return await self._evalsha(keys, args)

    async def _evalsha(self, keys: list[str], args: list[Any]) -> list[Any]:
        packed = hiredis.pack_command(("EVALSHA", self.sha, len(keys), *keys, *args))
        pool = self.client.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(packed)
            reply = await connection.read_response()
        except ResponseError:  # an error reply (e.g. NOSCRIPT): the connection is in step
            raise
        except BaseException:  # I/O error, timeout, cancellation: a reply may be in flight
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)
        return reply  # type: ignore[no-any-return]
