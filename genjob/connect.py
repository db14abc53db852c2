"""Build the Redis clients and the JobQueue from settings (one place, so AUTH, prefixes,
Sentinel and the failover retry policy agree in every component).

With `redis.sentinels` set, clients ask the sentinels for the current primary and reconnect
to the new one after a failover: a connection error, a timeout or a READONLY answer (the old
primary, demoted) drops the connection, and the command is retried with backoff on a new
connection, found through the sentinels again. Lua scripts are run through redis-py's
`Script` objects, which load a script again when a new primary answers NOSCRIPT.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aredis
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import ExponentialBackoff
from redis.connection import parse_url
from redis.retry import Retry

from genjob.keys import RedisKeys
from genjob.queue import JobQueue
from genjob.settings import GenjobSettings

_RETRY_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError)


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=2.0, base=0.05)


def _client_kwargs(settings: GenjobSettings) -> dict[str, Any]:
    return {
        "decode_responses": True,
        "retry_on_error": list(_RETRY_ERRORS),
        **settings.redis_kwargs(),
    }


def _sentinel_kwargs(settings: GenjobSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """Connection kwargs of the primary (database, user, password, TLS from the URL) and of
    the sentinels themselves."""
    r = settings.redis
    url = parse_url(r.url)
    primary: dict[str, Any] = {k: url[k] for k in ("db", "username", "password") if k in url}
    if urlsplit(r.url).scheme == "rediss":
        primary["ssl"] = True
    primary.update(_client_kwargs(settings))
    sentinel: dict[str, Any] = {"socket_timeout": min(r.socket_timeout_seconds, 2.0)}
    if r.sentinel_password is not None:
        sentinel["password"] = r.sentinel_password.get_secret_value()
    return primary, sentinel


def redis_client(settings: GenjobSettings) -> redis.Redis:
    """A client with decoded responses that rides through a failover (see the module doc)."""
    r = settings.redis
    retry = Retry(_backoff(), r.retries, _RETRY_ERRORS)
    if r.sentinels:
        primary, sentinel = _sentinel_kwargs(settings)
        sentinels = redis.sentinel.Sentinel(r.sentinel_addresses(), sentinel_kwargs=sentinel)
        connection = _FollowPrimarySSL if primary.pop("ssl", False) else _FollowPrimary
        client = sentinels.master_for(r.sentinel_master, retry=retry, connection_class=connection, **primary)
        return cast("redis.Redis", client)
    return redis.Redis.from_url(r.url, retry=retry, **_client_kwargs(settings))


def async_redis_client(settings: GenjobSettings) -> aredis.Redis:
    """The asyncio twin of `redis_client` (the gateway's hot path)."""
    r = settings.redis
    retry = redis.asyncio.retry.Retry(_backoff(), r.retries, _RETRY_ERRORS)
    if r.sentinels:
        primary, sentinel = _sentinel_kwargs(settings)
        sentinels = redis.asyncio.sentinel.Sentinel(r.sentinel_addresses(), sentinel_kwargs=sentinel)
        aconnection = _AsyncFollowPrimarySSL if primary.pop("ssl", False) else _AsyncFollowPrimary
        aclient = sentinels.master_for(
            r.sentinel_master, retry=retry, connection_class=aconnection, **primary
        )
        return cast("aredis.Redis", aclient)
    return aredis.Redis.from_url(r.url, retry=retry, **_client_kwargs(settings))


class _FollowPrimary(redis.sentinel.SentinelManagedConnection):
    """Reconnects through the sentinels. redis-py reconnects a dropped connection to the
    address it had (the dead or demoted primary) when a command is sent or retried; only its
    `connect` asks the sentinels (redis-py issue #3874, open). Without this, a command whose
    retries span a failover keeps knocking on the old primary until they run out."""

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if retry_socket_connect and not self._sock:
            self.connect()  # type: ignore[no-untyped-call]  # asks the sentinels, connects once
            return
        super().connect_check_health(check_health, retry_socket_connect)


class _FollowPrimarySSL(_FollowPrimary, redis.SSLConnection):
    pass


class _AsyncFollowPrimary(redis.asyncio.sentinel.SentinelManagedConnection):
    """The asyncio twin of `_FollowPrimary`."""

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if retry_socket_connect and not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]  # asks the sentinels, connects once
            return
        await super().connect_check_health(check_health, retry_socket_connect)


class _AsyncFollowPrimarySSL(_AsyncFollowPrimary, redis.asyncio.SSLConnection):
    pass


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
