"""Property-based test of the job state machine: after any sequence of operations, every job
is in exactly the place its state says, and the KEDA-visible counts agree with the states."""

from __future__ import annotations

from collections import Counter

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from genjob.keys import RedisKeys
from genjob.localredis import RedisServer
from genjob.queue import ClaimedJob, JobQueue, JobState, NewJob
from genjob.settings import QueueSettings

TIERS = ["pro", "free"]


class QueueMachine(RuleBasedStateMachine):
    server: RedisServer

    ids = Bundle("ids")

    @initialize()
    def setup(self) -> None:
        self.client = self.server.client()
        self.client.flushdb()
        self.keys = RedisKeys("p")
        settings = QueueSettings(lease_seconds=60, retry_backoff_base_seconds=0, retry_backoff_max_seconds=0)
        self.queue = JobQueue(self.client, self.keys, TIERS, settings)
        self.held: dict[str, ClaimedJob] = {}
        self.counter = 0

    @rule(target=ids, tier=st.sampled_from(TIERS), priority=st.integers(0, 9), attempts=st.integers(1, 3))
    def enqueue(self, tier: str, priority: int, attempts: int) -> str:
        self.counter += 1
        job_id = f"j{self.counter}"
        assert self.queue.enqueue(NewJob(job_id, tier, {}, priority=priority, max_attempts=attempts)).created
        return job_id

    @rule(job_id=ids)
    def enqueue_again(self, job_id: str) -> None:
        record = self.queue.get(job_id)
        assert record is not None
        assert not self.queue.enqueue(NewJob(job_id, record.tier, {})).created

    @rule(n=st.integers(1, 3))
    def claim(self, n: int) -> None:
        for job in self.queue.claim(TIERS, "w", max_jobs=n):
            assert job.id not in self.held
            self.held[job.id] = job

    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        if self.held:
            job = self.held.pop(data.draw(st.sampled_from(sorted(self.held))))
            assert self.queue.complete(job, {}).applied
            assert self.queue.complete(job, {}).duplicate

    @rule(data=st.data(), retryable=st.booleans())
    def fail(self, data: st.DataObject, retryable: bool) -> None:
        if self.held:
            job = self.held.pop(data.draw(st.sampled_from(sorted(self.held))))
            assert self.queue.fail(job, "GenerationError", "x", retryable=retryable).applied

    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        if self.held:
            job = self.held.pop(data.draw(st.sampled_from(sorted(self.held))))
            assert self.queue.requeue(job).applied

    @rule(data=st.data())
    def worker_dies(self, data: st.DataObject) -> None:
        """Expire one held lease and reap it; the old holder must not be able to finish."""
        if self.held:
            job = self.held.pop(data.draw(st.sampled_from(sorted(self.held))))
            self.client.zadd(self.keys.inflight(job.tier), {job.id: 0})
            assert self.queue.reap().requeued + self.queue.reap().dead_lettered >= 0
            assert not self.queue.complete(job, {}).applied

    @rule(job_id=ids)
    def cancel(self, job_id: str) -> None:
        self.queue.cancel(job_id)
        record = self.queue.get(job_id)
        if record is not None and record.state == JobState.RUNNING and job_id in self.held:
            assert self.queue.heartbeat(self.held[job_id], "w").cancel_requested
            assert self.queue.acknowledge_cancel(self.held.pop(job_id)).applied

    @rule()
    def promote_retries(self) -> None:
        self.queue.reap()

    @invariant()
    def every_job_is_where_its_state_says(self) -> None:
        if not hasattr(self, "queue"):
            return
        for tier in TIERS:
            listed = self.client.lrange(self.keys.pending(tier), 0, -1)
            ranked = self.client.zrange(self.keys.pending_by_priority(tier), 0, -1)
            pending = listed + ranked  # priority 0 on the list, priority > 0 in the sorted set
            assert len(pending) == len(set(pending)), "an id is queued twice"
            inflight = set(self.client.zrange(self.keys.inflight(tier), 0, -1))
            delayed = set(self.client.zrange(self.keys.delayed(tier), 0, -1))
            queued_at = set(self.client.zrange(self.keys.queued_at(tier), 0, -1))
            dead = self.client.lrange(self.keys.dead(tier), 0, -1)
            assert set(pending) == queued_at
            states = Counter()
            for key in self.client.scan_iter(self.keys.job("*")):
                h = self.client.hgetall(key)
                if h["tier"] != tier:
                    continue
                state, job_id = JobState(h["state"]), h["id"]
                states[state] += 1
                assert (job_id in pending) == (state == JobState.QUEUED)
                assert (job_id in inflight) == (state == JobState.RUNNING)
                assert (job_id in delayed) == (state == JobState.DELAYED)
                assert (job_id in dead) == (state == JobState.FAILED)
            assert states[JobState.QUEUED] == len(pending)
            assert states[JobState.RUNNING] == len(inflight)
        assert all(self.queue.get(j).state == JobState.RUNNING for j in self.held)


@pytest.mark.parametrize("_", [0])
def test_queue_state_machine(redis_server: RedisServer, _: int) -> None:
    QueueMachine.server = redis_server
    machine = QueueMachine.TestCase
    machine.settings = settings(
        max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
    )
    machine().runTest()


def test_redis_fixture_is_private(redis_client: redis.Redis) -> None:
    """Tests never touch a Redis on 6379 that they did not start."""
    port = redis_client.connection_pool.connection_kwargs["port"]
    assert port != 6379
