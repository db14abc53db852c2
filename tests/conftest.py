"""Fixtures shared by every test tier: a private redis-server, clients, settings, the queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from genjob.keys import RedisKeys
from genjob.localredis import RedisServer
from genjob.queue import JobQueue
from genjob.settings import GenjobSettings, QueueSettings


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session, on a free loopback port (never 6379 of someone else)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> GenjobSettings:
    return GenjobSettings(
        redis={"url": redis_server.url},
        results={"path": tmp_path / "results"},
    )


@pytest.fixture
def queue_settings() -> QueueSettings:
    return QueueSettings(lease_seconds=30, retry_backoff_base_seconds=0.05, retry_backoff_max_seconds=0.2)


@pytest.fixture
def job_queue(redis_client: redis.Redis, queue_settings: QueueSettings) -> JobQueue:
    tiers = list(GenjobSettings().tiers)
    return JobQueue(redis_client, RedisKeys("t"), tiers, queue_settings)
