"""Clients follow the primary through a Sentinel failover, and reload scripts a primary lacks.

Real redis-server processes: a primary, two replicas and three sentinels on loopback; the
primary is killed with SIGKILL. Nothing here asserts a timing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest

from genjob.connect import async_redis_client, job_queue
from genjob.localredis import RedisServer, SentinelDeployment
from genjob.queue import JobState, NewJob
from genjob.settings import GenjobSettings


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[SentinelDeployment]:
    deployment = SentinelDeployment(tmp_path / "redis").start()
    yield deployment
    deployment.stop()


def sentinel_settings(deployment: SentinelDeployment) -> GenjobSettings:
    return GenjobSettings(
        redis={"sentinels": deployment.sentinel_addresses, "sentinel_master": deployment.master}
    )


def job(job_id: str) -> NewJob:
    return NewJob(id=job_id, tier="free", spec={"prompt": job_id})


@pytest.mark.parametrize("address", ["sentinel", "sentinel:", ":26379", "sentinel:0", "sentinel:http"])
def test_sentinel_addresses_must_be_host_and_port(address: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="must be host:port"):
        GenjobSettings(redis={"sentinels": [address]})


def test_the_queue_follows_the_primary_through_a_failover(deployment: SentinelDeployment) -> None:
    """One JobQueue, built once from settings, keeps working after its primary is killed:
    commands in flight are retried on the new primary (found through the sentinels), and a
    restarted old primary serves as a replica without taking writes back."""
    queue = job_queue(sentinel_settings(deployment))
    queue.enqueue(job("a"))
    queue.enqueue(job("b"))
    (claimed,) = queue.claim(["free"], "w")
    assert queue.client.wait(2, 5000) == 2  # both replicas have every write so far

    killed, _seconds = deployment.kill_primary()
    assert queue.complete(claimed, {"ok": True}).applied
    assert queue.enqueue(job("c")).created
    deployment.restart_as_replica(killed)
    assert [j.id for j in queue.claim(["free"], "w", max_jobs=2)] == ["b", "c"]
    assert queue.reap().requeued == 0  # reap runs its scripts in a pipeline
    record = queue.get("a")
    assert record is not None and record.state == JobState.SUCCEEDED
    assert deployment.primary() is not killed


def test_a_command_whose_retries_span_the_failover_reaches_the_new_primary(
    deployment: SentinelDeployment,
) -> None:
    """A command sent while the primary is dead is retried until the sentinels name the new
    one, even when the old primary is back meanwhile as a replica (it answers READONLY)."""
    queue = job_queue(sentinel_settings(deployment))
    queue.enqueue(job("a"))  # the pool holds a connection to the primary about to die
    deployment.wait_replicas_known()

    def fail_over() -> None:
        killed, _seconds = deployment.kill_primary()
        deployment.restart_as_replica(killed)

    failover = threading.Thread(target=fail_over)
    failover.start()
    time.sleep(0.5)  # killed by now; sentinels need over a second to agree on a new primary
    try:
        assert queue.enqueue(job("b")).created  # sent to the dead primary first
    finally:
        failover.join()
    assert [j.id for j in queue.claim(["free"], "w", max_jobs=2)] == ["a", "b"]


def test_an_idle_worker_blocked_on_the_dying_primary_claims_from_the_new_one(
    deployment: SentinelDeployment,
) -> None:
    """An idle worker waits in `claim(block_seconds=...)` (BLPOP on its wake list) when the
    primary is killed: the command fails in flight, and its retries must reach the new
    primary through the sentinels. redis-py alone (issue #3874) reconnects such a retry to the
    old address: the dead port, then the old primary restarted as a replica, which answers
    READONLY until the retries run out. genjob.connect's `_FollowPrimary` asks the sentinels."""
    settings = sentinel_settings(deployment)
    worker, producer = job_queue(settings), job_queue(settings)
    deployment.wait_replicas_known()
    outcome: dict[str, object] = {}

    def wait_for_work() -> None:
        try:
            outcome["jobs"] = [j.id for j in worker.claim(["free"], "w", block_seconds=120)]
        except Exception as error:  # the assertion below shows it
            outcome["error"] = error

    waiting = threading.Thread(target=wait_for_work)
    waiting.start()
    try:
        primary = deployment.primary().client()
        while not any(c["cmd"] == "blpop" for c in primary.client_list()):
            time.sleep(0.05)  # the worker is blocked on the primary about to die
        primary.close()
        killed, _seconds = deployment.kill_primary()
        deployment.restart_as_replica(killed)
        assert producer.enqueue(job("a")).created  # on the new primary: wakes the worker
    finally:
        waiting.join(timeout=180)
    assert outcome == {"jobs": ["a"]}


def test_the_asyncio_client_follows_the_primary_through_a_failover(
    deployment: SentinelDeployment,
) -> None:
    async def scenario() -> list[int]:
        client = async_redis_client(sentinel_settings(deployment))
        first = await client.incr("counter")
        await client.wait(2, 5000)
        deployment.kill_primary()
        second = await client.incr("counter")
        await client.aclose()
        return [first, second]

    assert asyncio.run(scenario()) == [1, 2]


def test_scripts_are_loaded_again_on_a_primary_that_lacks_them(redis_server: RedisServer) -> None:
    """A new primary may not have the scripts (a restarted one, or SCRIPT FLUSH): every queue
    operation, single or pipelined, loads its script again on NOSCRIPT."""
    queue = job_queue(GenjobSettings(redis={"url": redis_server.url}))
    queue.client.flushdb()
    for step in range(3):
        queue.client.script_flush()
        if step == 0:
            queue.enqueue(job("a"))
        elif step == 1:
            (claimed,) = queue.claim(["free"], "w")
            queue.client.script_flush()
            assert queue.heartbeat(claimed, "w").lease_held
            queue.client.script_flush()
            assert queue.complete(claimed, {}).applied
        else:
            assert queue.reap().requeued == 0
    record = queue.get("a")
    assert record is not None and record.state == JobState.SUCCEEDED
