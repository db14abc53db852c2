"""Build the Redis client and the JobQueue from settings (one place, so AUTH and prefixes agree)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis

from genjob.keys import RedisKeys
from genjob.queue import JobQueue
from genjob.settings import GenjobSettings


def redis_client(settings: GenjobSettings) -> redis.Redis:
    """A client with decoded responses; the password comes from settings.redis.password or the URL."""
    return redis.Redis.from_url(settings.redis.url, decode_responses=True, **settings.redis_kwargs())


def redis_keys(settings: GenjobSettings) -> RedisKeys:
    return RedisKeys(settings.redis.key_prefix)


def job_queue(settings: GenjobSettings, client: redis.Redis | None = None) -> JobQueue:
    return JobQueue(
        client or redis_client(settings), redis_keys(settings), list(settings.tiers), settings.queue
    )


def redacted_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
