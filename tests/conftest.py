"""Fixtures shared by every test tier: a private redis-server, clients, settings, the queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from genjob.keys import RedisKeys
from genjob.localredis import RedisServer
from genjob.queue import JobQueue
from genjob.settings import GenjobSettings, QueueSettings, ResultStoreSettings


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


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto's server mode) on a free loopback port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_settings(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> ResultStoreSettings:
    """An S3 result store (bucket genjob-results, prefix jobs/) on the moto server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="genjob-results")
    return ResultStoreSettings(
        backend="s3",
        s3_bucket="genjob-results",
        s3_prefix="jobs/",
        s3_endpoint_url=s3_endpoint,
        s3_region="us-east-1",
    )
