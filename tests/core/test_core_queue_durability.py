"""Nothing is lost when Redis itself restarts (AOF on, as the chart runs it), even after kill -9."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from genjob.keys import RedisKeys
from genjob.localredis import RedisServer
from genjob.queue import JobQueue, JobState, NewJob
from genjob.settings import QueueSettings


def test_kill_9_of_redis_with_aof_loses_no_job(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "aof", appendonly=True, password="pw").start()
    try:
        queue = JobQueue(server.client(), RedisKeys("d"), ["free"], QueueSettings())
        for i in range(100):
            queue.enqueue(NewJob(f"j{i}", "free", {"i": i}))
        held = queue.claim(["free"], "w", max_jobs=1)
        queue.complete(held[0], {"done": True})
        running = queue.claim(["free"], "w")[0]

        server.restart(kill=True)

        queue = JobQueue(server.client(), RedisKeys("d"), ["free"], QueueSettings())
        stats = queue.stats(["free"])[0]
        assert (stats.pending, stats.inflight) == (98, 1)
        done = queue.get("j0")
        assert done is not None and done.state == JobState.SUCCEEDED and done.result == {"done": True}
        assert queue.complete(running, {"after": "restart"}).applied, "a lease survives the restart"
    finally:
        server.stop()


def test_a_password_protected_redis_refuses_clients_without_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "auth", password="s3cret").start()
    try:
        anonymous = redis.Redis(port=server.port, decode_responses=True)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        assert server.client().ping()
    finally:
        server.stop()
