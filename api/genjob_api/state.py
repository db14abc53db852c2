"""The gateway's shared clients and services, built once in the app's lifespan."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis

from genjob.connect import async_redis_client, redis_client, redis_keys
from genjob.keys import RedisKeys
from genjob.queue import JobQueue
from genjob.result_store import ResultStore, build_result_store
from genjob.settings import GenjobSettings
from genjob_api.auth import ApiKeyStore
from genjob_api.backends import JobBackend, WaitEstimator
from genjob_api.idempotency import IdempotencyStore
from genjob_api.metrics import ApiMetrics
from genjob_api.ratelimit import RateLimiter
from genjob_api.sse import StreamSlots


@dataclass
class GatewayState:
    settings: GenjobSettings
    client: redis.Redis
    aclient: aredis.Redis
    keys: RedisKeys
    queue: JobQueue
    backend: JobBackend
    api_keys: ApiKeyStore
    limiter: RateLimiter
    idempotency: IdempotencyStore
    results: ResultStore
    estimator: WaitEstimator
    metrics: ApiMetrics
    streams: StreamSlots

    async def aclose(self) -> None:
        self.client.close()
        await self.aclient.aclose()


def build_state(settings: GenjobSettings, metrics: ApiMetrics, kube_client: Any = None) -> GatewayState:
    # Sync client for the threadpool routes; asyncio client for the async ones (rate limit, submit).
    client = redis_client(settings)
    aclient = async_redis_client(settings)
    keys = redis_keys(settings)
    queue = JobQueue(client, keys, list(settings.tiers), settings.queue)
    estimator = WaitEstimator()
    limiter = RateLimiter(aclient, keys, settings.api.rate_limit_per_minute)
    backend: JobBackend
    if settings.api.mode == "cluster":
        from genjob_api.backends.cluster import ClusterBackend, load_api_client

        backend = ClusterBackend(kube_client or load_api_client(), settings, estimator, limiter, queue)
    else:
        from genjob_api.backends.local import LocalBackend
        from genjob_api.backends.local_submit import SubmitScript

        retention = settings.queue.finished_retention_seconds
        submitter = SubmitScript(
            aclient,
            keys,
            settings.queue.events_max_length,
            retention,
            wait_replicas=settings.redis.wait_replicas,
            wait_timeout_ms=settings.redis.wait_timeout_ms,
            max_unfinished_per_tenant=settings.api.max_queued_per_tenant,
        )
        backend = LocalBackend(queue, submitter, estimator, retention)
    return GatewayState(
        settings=settings,
        client=client,
        aclient=aclient,
        keys=keys,
        queue=queue,
        backend=backend,
        api_keys=ApiKeyStore(settings.api.api_keys_file),
        limiter=limiter,
        idempotency=IdempotencyStore(aclient, keys),
        results=build_result_store(settings.results),
        streams=StreamSlots(settings.api.max_streams_per_key),
        estimator=estimator,
        metrics=metrics,
    )


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"
