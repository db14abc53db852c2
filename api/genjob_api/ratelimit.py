"""Per-API-key rate limits kept in Redis: a fixed one-minute window per key.

Every gateway replica shares the counters, so the limit holds across replicas. The counter
is one Lua function (`genjob_api/lua/ratelimit.lua`, loaded before every gateway script) and
a request is counted once, in the same round trip as its work where there is one: local
mode's submit counts inside its script (`genjob_api/lua/submit.lua`); every other route
calls `RateLimiter.hit` (`hit.lua`: one round trip on the asyncio client).
Requests refused before any Redis work (401, 413, invalid bodies) are not counted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from importlib import resources

import redis.asyncio as aredis

from genjob.keys import RedisKeys
from genjob.queue.scripts import prelude

WINDOW_SECONDS = 60
COUNTER_TTL_SECONDS = WINDOW_SECONDS + 1  # a counter outliving its window by a second is harmless


def gateway_script(name: str) -> str:
    """A gateway script (`genjob_api/lua/<name>.lua`) after what it builds on: the queue's
    prelude and the request counter."""
    lua = resources.files("genjob_api") / "lua"
    return "\n".join((prelude(), (lua / "ratelimit.lua").read_text(), (lua / f"{name}.lua").read_text()))


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
        self.keys = keys
        self.default_per_minute = default_per_minute
        self._hit = client.register_script(gateway_script("hit"))

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
        count = await self._hit(keys=[counter.key], args=[COUNTER_TTL_SECONDS])
        return RateDecision.of(int(count), counter.limit, counter.now)
