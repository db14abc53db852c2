"""Per-API-key rate limits kept in Redis: a fixed one-minute window per key.

One round trip per request on the asyncio client (no thread hop): INCR and EXPIRE
pipelined (no transaction needed: EXPIRE NX only sets the first time, and a counter that
outlives its window by a second is harmless).
Every gateway replica shares the counters, so the limit holds across replicas.
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

    def headers(self) -> dict[str, str]:
        out = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining)}
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after_seconds)
        return out


class RateLimiter:
    def __init__(self, client: aredis.Redis, keys: RedisKeys, default_per_minute: int) -> None:
        self.client = client
        self.keys = keys
        self.default_per_minute = default_per_minute

    async def hit(self, key_id: str, per_minute: int | None = None) -> RateDecision:
        limit = per_minute or self.default_per_minute
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        name = self.keys.rate_limit(key_id, window)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.incr(name)
            pipe.expire(name, WINDOW_SECONDS + 1, nx=True)
            count = int((await pipe.execute())[0])
        retry_after = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
        return RateDecision(count <= limit, limit, max(0, limit - count), retry_after)
