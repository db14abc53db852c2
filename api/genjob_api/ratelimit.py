"""Per-API-key rate limits kept in Redis: a fixed one-minute window per key.

Every gateway replica shares the counters, so the limit holds across replicas. A request
is counted once, in the same round trip as its work where there is one: local mode's
submit counts inside its script (`genjob/queue/lua/submit.lua`); every other route calls
`RateLimiter.hit` (INCR and EXPIRE NX pipelined: one round trip on the asyncio client, no
transaction needed, as a counter that outlives its window by a second is harmless).
Requests refused before any Redis work (401, 413, invalid bodies) are not counted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis.asyncio as aredis

from genjob.keys import RedisKeys

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_seconds: int

    @classmethod
    def of(cls, count: int, limit: int, now: float) -> RateDecision:
        """The decision for the `count`-th request of the window that holds `now`."""
        retry_after = max(1, math.ceil((now // WINDOW_SECONDS + 1) * WINDOW_SECONDS - now))
        return cls(count <= limit, limit, max(0, limit - count), retry_after)

    def headers(self) -> dict[str, str]:
        out = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after_seconds)
        return out


class RateLimitedError(Exception):
    """Raised by a backend's submit when the request is over its key's limit (nothing queued)."""

    def __init__(self, decision: RateDecision) -> None:
        super().__init__(f"over the limit of {decision.limit} requests per minute")
        self.decision = decision


@dataclass(frozen=True)
class RateCounter:
    """Where one request is counted: the key's counter of the current window, and its limit."""

    key: str
    limit: int
    now: float


class RateLimiter:
    def __init__(self, client: aredis.Redis, keys: RedisKeys, default_per_minute: int) -> None:
        self.client = client
        self.keys = keys
        self.default_per_minute = default_per_minute

    def counter(self, key_id: str, per_minute: int | None = None) -> RateCounter:
        now = time.time()
        return RateCounter(
            self.keys.rate_limit(key_id, int(now // WINDOW_SECONDS)),
            per_minute or self.default_per_minute,
            now,
        )

    async def hit(self, key_id: str, per_minute: int | None = None) -> RateDecision:
        return await self.count(self.counter(key_id, per_minute))

    async def count(self, counter: RateCounter) -> RateDecision:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.incr(counter.key)
            pipe.expire(counter.key, WINDOW_SECONDS + 1, nx=True)
            count = int((await pipe.execute())[0])
        return RateDecision.of(count, counter.limit, counter.now)
