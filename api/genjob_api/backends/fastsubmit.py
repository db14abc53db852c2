"""The submit hot path of local mode: one Redis command per submit, batched per loop turn.

`genjob/queue/lua/submit.lua` counts the request against the API key's rate limit,
enqueues exactly as `JobQueue.enqueue` does (same Lua function, same arguments from
`genjob.queue.core.enqueue_call`), and answers the job's queue position and the active
worker count, indexing the job under its tenant on the way.

Each EVALSHA is packed by hiredis (C): redis-py's asyncio client packs its ~25 arguments in
Python and wraps each command in retry and pipeline bookkeeping, which cost more CPU on
this path than the round trip itself. The submits issued during one event-loop turn go
out as one pipeline on one pooled connection (one write, one read of all replies): under
load that is several submits per round trip, and one pool checkout, one syscall each way
and one wake-up for all of them (measured: bench/gateway.py, docs/performance.md).
No automatic retry: a connection error reaches every submit of its batch, and the caller
as a 503 (errors.py); retrying is the client's call (an Idempotency-Key makes it safe).
"""

from __future__ import annotations

import asyncio
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
        self._waiting: list[tuple[bytes, asyncio.Future[list[Any]]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, job: NewJob, tenant: str, rate: RateCounter | None = None) -> Submitted:
        """Enqueue (counting the request on `rate` first, if given); RateLimitedError when over."""
        keys, args = enqueue_call(self.keys, job, self.events_max_length)
        keys += [
            self.keys.tier_workers(job.tier),
            self.keys.tenant_jobs(tenant),
            rate.key if rate else "",
        ]  # "": unused
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
        reply: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if not self._waiting:
            sender = asyncio.ensure_future(self._send_waiting())
            self._sending.add(sender)  # the loop keeps only weak references to tasks
            sender.add_done_callback(self._sending.discard)
        self._waiting.append((packed, reply))
        return await reply

    async def _send_waiting(self) -> None:
        """Send what waits on one connection and hand each reply (or error reply) to its waiter.

        A task starts at the next loop turn, so every submit of this turn has joined by then.
        A submit cancelled before its command left is not sent; one cancelled later still ran."""
        batch = [(packed, waiter) for packed, waiter in self._waiting if not waiter.done()]
        self._waiting = []
        if not batch:
            return
        pool = self.client.connection_pool
        connection = None
        try:
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            await connection.send_packed_command(b"".join(packed for packed, _ in batch))
            for _, waiter in batch:
                try:
                    reply = await connection.read_response()
                except ResponseError as exc:  # an error reply (e.g. NOSCRIPT): the connection is in step
                    _settle(waiter, exc)
                else:
                    _settle(waiter, reply)
        except BaseException as exc:  # I/O error, timeout, cancellation: replies may be in flight
            if connection is not None:
                await connection.disconnect()
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            if connection is not None:
                await pool.release(connection)


def _settle(waiter: asyncio.Future[Any], outcome: Any) -> None:
    if waiter.done():
        return
    if isinstance(outcome, BaseException):
        waiter.set_exception(outcome)
    else:
        waiter.set_result(outcome)


def _fail(batch: list[tuple[bytes, asyncio.Future[Any]]], exc: BaseException) -> None:
    for _, waiter in batch:
        if waiter.done():
            continue
        if isinstance(exc, Exception):
            waiter.set_exception(exc)
        else:  # cancelled: so are its waiters
            waiter.cancel()
