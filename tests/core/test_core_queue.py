"""The queue protocol against a real redis-server: every operation and its edge cases."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from genjob.errors import InvalidJobIdError, JobNotFoundError, NotDeadLetteredError, UnknownTierError
from genjob.keys import RedisKeys
from genjob.queue import CancelOutcome, ClaimedJob, JobQueue, JobState, NewJob, Place, read_history
from genjob.settings import QueueSettings


def job(job_id: str, tier: str = "free", **kw: object) -> NewJob:
    return NewJob(id=job_id, tier=tier, spec={"prompt": job_id}, **kw)


def short_lease_queue(client: redis.Redis, lease: float = 0.2) -> JobQueue:
    settings = QueueSettings(
        lease_seconds=lease, retry_backoff_base_seconds=0.05, retry_backoff_max_seconds=0.1
    )
    return JobQueue(client, RedisKeys("t"), ["pro", "free"], settings)


def test_enqueue_is_idempotent_by_id(job_queue: JobQueue) -> None:
    """A repeated enqueue changes nothing and says the job existed."""
    first = job_queue.enqueue(job("a"))
    again = job_queue.enqueue(job("a"))
    assert first.created and not again.created
    assert again.state == JobState.QUEUED
    assert job_queue.stats(["free"])[0].pending == 1


def test_enqueue_of_a_finished_job_reports_its_final_state(job_queue: JobQueue) -> None:
    job_queue.enqueue(job("a"))
    (claimed,) = job_queue.claim(["free"], "w")
    job_queue.complete(claimed, {"ok": True})
    again = job_queue.enqueue(job("a"))
    assert not again.created and again.state == JobState.SUCCEEDED
    assert job_queue.stats(["free"])[0].pending == 0


@pytest.mark.parametrize("bad_id", ["", "-starts-with-dash", "has space", "x" * 129, "a/b"])
def test_bad_job_ids_are_refused(job_queue: JobQueue, bad_id: str) -> None:
    with pytest.raises(InvalidJobIdError):
        job_queue.enqueue(job(bad_id))


def test_unknown_tier_and_bad_numbers_are_refused(job_queue: JobQueue) -> None:
    with pytest.raises(UnknownTierError, match="configured tiers"):
        job_queue.enqueue(job("a", tier="platinum"))
    with pytest.raises(ValueError, match="priority"):
        job_queue.enqueue(job("a", priority=10))
    with pytest.raises(ValueError, match="max_attempts"):
        job_queue.enqueue(job("a", max_attempts=0))
    with pytest.raises(ValueError, match="at least one tier"):
        job_queue.claim([], "w")
    with pytest.raises(UnknownTierError):
        job_queue.claim(["nope"], "w")


def test_pending_is_a_list_and_inflight_a_sorted_set_for_keda(
    job_queue: JobQueue, redis_client: redis.Redis
) -> None:
    """KEDA's redis scaler reads LLEN of pending and ZCARD of in-flight: the types are a contract."""
    job_queue.enqueue(job("a"))
    job_queue.enqueue(job("b"))
    job_queue.claim(["free"], "w")
    keys = RedisKeys("t")
    assert redis_client.type(keys.pending("free")) == "list"
    assert redis_client.type(keys.inflight("free")) == "zset"
    assert redis_client.llen(keys.pending("free")) == 1
    assert redis_client.zcard(keys.inflight("free")) == 1


def test_claim_follows_tier_order_then_fifo(job_queue: JobQueue) -> None:
    for i in range(3):
        job_queue.enqueue(job(f"f{i}", "free"))
    job_queue.enqueue(job("p0", "pro"))
    order = [job_queue.claim(["pro", "free"], "w")[0].id for _ in range(4)]
    assert order == ["p0", "f0", "f1", "f2"]
    assert job_queue.claim(["pro", "free"], "w") == []


def test_higher_priority_jumps_ahead_within_a_tier(job_queue: JobQueue) -> None:
    job_queue.enqueue(job("n1"))
    job_queue.enqueue(job("n2"))
    job_queue.enqueue(job("p5", priority=5))
    job_queue.enqueue(job("p9", priority=9))
    job_queue.enqueue(job("p5b", priority=5))
    order = [job_queue.claim(["free"], "w")[0].id for _ in range(5)]
    assert order == ["p9", "p5", "p5b", "n1", "n2"]


def _commands_run(client: redis.Redis) -> int:
    return sum(int(v["calls"]) for v in client.info("commandstats").values())


def test_a_priority_insert_costs_the_same_whatever_the_backlog(job_queue: JobQueue) -> None:
    """The attack: a long backlog of high-priority jobs made each new priority job scan the
    list inside Redis. The number of Redis commands one enqueue runs does not grow with it."""
    costs = []
    for backlog in (10, 2_000):
        job_queue.client.flushdb()
        for i in range(backlog):
            job_queue.enqueue(job(f"b{i}-q", priority=9))
        job_queue.client.config_resetstat()
        job_queue.enqueue(job(f"new-{backlog}", priority=5))
        costs.append(_commands_run(job_queue.client))
    assert costs[0] == costs[1], costs
    order = [c.id for c in job_queue.claim(["free"], "w", max_jobs=1)]
    assert order == ["b0-q"]  # priority 9 before 5, oldest first


def test_priority_bands_keep_fifo_and_retries_go_to_the_head_of_their_band(job_queue: JobQueue) -> None:
    for name, priority in (("a5", 5), ("b0", 0), ("c5", 5), ("d9", 9), ("e0", 0)):
        job_queue.enqueue(job(name, priority=priority))
    assert job_queue.stats(["free"])[0].pending == 5
    assert job_queue.place_in_line("e0", "free").position == 4
    assert job_queue.place_in_line("c5", "free").position == 2
    (first,) = job_queue.claim(["free"], "w")
    assert first.id == "d9"
    (second,) = job_queue.claim(["free"], "w")
    assert second.id == "a5"
    assert job_queue.requeue(second, "Preempted", "node going away")
    assert job_queue.cancel("c5") == CancelOutcome.CANCELLED
    order = [job_queue.claim(["free"], "w")[0].id for _ in range(3)]
    assert order == ["a5", "b0", "e0"]
    assert job_queue.stats(["free"])[0].pending == 0


def test_claim_blocks_until_work_arrives(job_queue: JobQueue) -> None:
    """An idle claim waits on the wake list and returns the job enqueued meanwhile."""
    timer = threading.Timer(0.3, lambda: job_queue.enqueue(job("late")))
    timer.start()
    claimed = job_queue.claim(["free"], "w", block_seconds=10)
    timer.join()
    assert [c.id for c in claimed] == ["late"]


def test_blocking_claim_returns_empty_when_nothing_comes(job_queue: JobQueue) -> None:
    assert job_queue.claim(["free"], "w", block_seconds=0.2) == []


def test_batch_claim_takes_only_compatible_jobs(job_queue: JobQueue) -> None:
    job_queue.enqueue(job("a1", batch_key="m|64"))
    job_queue.enqueue(job("a2", batch_key="m|64"))
    job_queue.enqueue(job("b1", batch_key="m|128"))
    job_queue.enqueue(job("a3", batch_key="m|64"))
    batch = job_queue.claim(["free"], "w", max_jobs=4)
    assert [c.id for c in batch] == ["a1", "a2"]
    assert len({c.lease for c in batch}) == 1  # first claim of each job: lease "1"
    assert [c.id for c in job_queue.claim(["free"], "w", max_jobs=4)] == ["b1"]


def test_claim_returns_the_spec_and_meta(job_queue: JobQueue) -> None:
    job_queue.enqueue(NewJob("a", "free", {"prompt": "fox", "width": 64}, meta={"name": "fox"}))
    (claimed,) = job_queue.claim(["free"], "w")
    assert claimed.spec == {"prompt": "fox", "width": 64}
    assert claimed.meta == {"name": "fox"}
    assert claimed.attempts == 0 and claimed.max_attempts == 3


def test_complete_is_idempotent(job_queue: JobQueue) -> None:
    job_queue.enqueue(job("a"))
    (claimed,) = job_queue.claim(["free"], "w")
    first = job_queue.complete(claimed, {"images": [1]}, gpu_seconds=1.5)
    again = job_queue.complete(claimed, {"images": [2]})
    assert first.applied and first.state == JobState.SUCCEEDED
    assert not again.applied and again.duplicate
    record = job_queue.get("a")
    assert record is not None and record.result == {"images": [1]} and record.gpu_seconds == 1.5
    assert job_queue.stats(["free"])[0].inflight == 0


def test_a_reaped_holder_cannot_overwrite_the_newer_attempt(redis_client: redis.Redis) -> None:
    q = short_lease_queue(redis_client)
    q.enqueue(job("a"))
    (old,) = q.claim(["free"], "w-old")
    time.sleep(0.3)
    assert q.reap().requeued == 1
    (new,) = q.claim(["free"], "w-new")
    assert new.lease != old.lease
    late = q.complete(old, {"from": "old"})
    assert not late.applied and not late.duplicate and late.state == JobState.RUNNING
    assert not q.heartbeat(old, "w-old").lease_held
    assert q.complete(new, {"from": "new"}).applied
    record = q.get("a")
    assert record is not None and record.result == {"from": "new"} and record.attempts == 1


def test_heartbeat_keeps_a_lease_alive(redis_client: redis.Redis) -> None:
    q = short_lease_queue(redis_client, lease=0.4)
    q.enqueue(job("a"))
    (claimed,) = q.claim(["free"], "w")
    for _ in range(4):
        time.sleep(0.2)
        assert q.heartbeat(claimed, "w").lease_held
        assert q.reap().requeued == 0
    assert q.complete(claimed, {}).applied


def test_progress_is_recorded_and_streamed(job_queue: JobQueue, redis_client: redis.Redis) -> None:
    job_queue.enqueue(job("a"))
    (claimed,) = job_queue.claim(["free"], "w")
    touch = job_queue.report_progress(claimed, "w", 3, 10)
    assert touch.lease_held and not touch.cancel_requested
    record = job_queue.get("a")
    assert record is not None and (record.progress_step, record.progress_total) == (3, 10)
    events = [e for e in read_history(redis_client, RedisKeys("t")) if e.type == "progress"]
    assert [(e.int_field("step"), e.int_field("total")) for e in events] == [(3, 10)]
    with pytest.raises(ValueError, match="between 0 and total"):
        job_queue.report_progress(claimed, "w", 11, 10)


def test_retryable_failure_backs_off_then_runs_again(job_queue: JobQueue) -> None:
    job_queue.enqueue(job("a", max_attempts=2))
    (claimed,) = job_queue.claim(["free"], "w")
    outcome = job_queue.fail(claimed, "GenerationError", "boom", retryable=True)
    assert outcome.applied and outcome.state == JobState.DELAYED and outcome.retry_delay_ms == 50
    stats = job_queue.stats(["free"])[0]
    assert (stats.pending, stats.inflight, stats.delayed) == (0, 0, 1)
    time.sleep(0.1)
    (again,) = job_queue.claim(["free"], "w")
    assert again.id == "a" and again.attempts == 1
    final = job_queue.fail(again, "GenerationError", "boom again", retryable=True)
    assert final.state == JobState.FAILED
    assert job_queue.dead_letters("free") == ["a"]


def test_non_retryable_failure_is_final_at_once(job_queue: JobQueue) -> None:
    job_queue.enqueue(job("a", max_attempts=5))
    (claimed,) = job_queue.claim(["free"], "w")
    outcome = job_queue.fail(claimed, "ModelNotFound", "no such model", retryable=False)
    assert outcome.state == JobState.FAILED
    record = job_queue.get("a")
    assert record is not None and record.reason == "ModelNotFound" and record.attempts == 1


def test_requeue_goes_to_the_head_without_counting_an_attempt(job_queue: JobQueue) -> None:
    job_queue.enqueue(job("a"))
    job_queue.enqueue(job("b"))
    (claimed,) = job_queue.claim(["free"], "w")
    assert job_queue.requeue(claimed, "Preempted", "node is going away").applied
    (again,) = job_queue.claim(["free"], "w2")
    assert again.id == "a" and again.attempts == 0
    record = job_queue.get("a")
    assert record is not None and record.reason == "Preempted"


def test_cancel_of_a_queued_job_removes_it(job_queue: JobQueue) -> None:
    job_queue.enqueue(job("a"))
    job_queue.enqueue(job("b"))
    assert job_queue.cancel("a") == CancelOutcome.CANCELLED
    assert job_queue.stats(["free"])[0].pending == 1
    assert job_queue.claim(["free"], "w")[0].id == "b"
    record = job_queue.get("a")
    assert record is not None and record.state == JobState.CANCELLED


def test_cancel_of_a_running_job_flags_it_for_its_worker(job_queue: JobQueue) -> None:
    job_queue.enqueue(job("a"))
    (claimed,) = job_queue.claim(["free"], "w")
    assert job_queue.cancel("a") == CancelOutcome.CANCEL_REQUESTED
    assert job_queue.heartbeat(claimed, "w").cancel_requested
    assert job_queue.acknowledge_cancel(claimed).state == JobState.CANCELLED
    assert job_queue.cancel("a") == CancelOutcome.ALREADY_FINAL
    assert job_queue.cancel("never-seen") == CancelOutcome.NOT_FOUND


def test_cancel_of_a_delayed_job_removes_it_from_the_retry_set(job_queue: JobQueue) -> None:
    job_queue.enqueue(job("a"))
    (claimed,) = job_queue.claim(["free"], "w")
    job_queue.fail(claimed, "GenerationError", "x", retryable=True)
    assert job_queue.cancel("a") == CancelOutcome.CANCELLED
    time.sleep(0.1)
    assert job_queue.claim(["free"], "w") == []
    assert job_queue.stats(["free"])[0].delayed == 0


def test_reaper_requeues_then_dead_letters_with_worker_lost(redis_client: redis.Redis) -> None:
    q = short_lease_queue(redis_client)
    q.enqueue(job("a", max_attempts=2))
    q.enqueue(job("b"))
    q.claim(["free"], "dead-worker")
    time.sleep(0.3)
    assert q.reap().requeued == 1
    (again,) = q.claim(["free"], "dead-worker-2")
    assert again.id == "a", "a reaped job goes back to the head of its queue"
    time.sleep(0.3)
    result = q.reap()
    assert result.dead_lettered == 1 and result.requeued == 0
    record = q.get("a")
    assert record is not None and record.state == JobState.FAILED and record.reason == "WorkerLost"
    assert q.dead_letters("free") == ["a"]


def test_reaper_promotes_due_retries_so_keda_sees_them(job_queue: JobQueue) -> None:
    job_queue.enqueue(job("a"))
    (claimed,) = job_queue.claim(["free"], "w")
    job_queue.fail(claimed, "GenerationError", "x", retryable=True)
    time.sleep(0.1)
    assert job_queue.reap().promoted == 1
    assert job_queue.stats(["free"])[0].pending == 1


def test_redrive_sends_a_dead_letter_back_with_attempts_reset(job_queue: JobQueue) -> None:
    job_queue.enqueue(job("a", max_attempts=1))
    (claimed,) = job_queue.claim(["free"], "w")
    job_queue.fail(claimed, "GenerationError", "x", retryable=True)
    assert job_queue.dead_letters("free") == ["a"]
    job_queue.redrive("a")
    assert job_queue.dead_letters("free") == []
    (again,) = job_queue.claim(["free"], "w")
    assert again.id == "a" and again.attempts == 0
    with pytest.raises(NotDeadLetteredError):
        job_queue.redrive("a")
    with pytest.raises(JobNotFoundError):
        job_queue.redrive("missing")


def test_stats_report_counts_and_oldest_age(job_queue: JobQueue) -> None:
    for name in "abc":
        job_queue.enqueue(job(name))
    job_queue.claim(["free"], "w")
    time.sleep(0.05)  # the oldest pending job ("b") has now waited at least this long
    (free,) = job_queue.stats(["free"])
    assert (free.pending, free.inflight, free.delayed, free.dead) == (2, 1, 0, 0)
    assert free.oldest_pending_age_seconds > 0
    (pro,) = job_queue.stats(["pro"])
    assert (pro.pending, pro.oldest_pending_age_seconds) == (0, 0.0)
    assert job_queue.active_workers() == 1


def test_place_in_line_gives_position_length_and_the_tiers_workers(job_queue: JobQueue) -> None:
    for name in "abc":
        job_queue.enqueue(job(name))
    job_queue.claim(["free", "pro"], "w")  # claims "a"; the worker now serves free and pro
    assert job_queue.place_in_line("c", "free") == Place(position=1, pending=2, workers=1)
    assert job_queue.place_in_line("a", "free") == Place(position=None, pending=2, workers=1)
    assert job_queue.place_in_line("x", "starter") == Place(position=None, pending=0, workers=0)
    with pytest.raises(UnknownTierError):
        job_queue.place_in_line("c", "nope")


def test_unfinished_ids_are_the_pending_in_flight_and_delayed_ones(job_queue: JobQueue) -> None:
    for name in "abcd":
        job_queue.enqueue(job(name))
    done, retried, running = job_queue.claim(["free"], "w", max_jobs=3)
    job_queue.complete(done, {"ok": True})
    job_queue.fail(retried, "Boom", "boom", retryable=True)  # delayed for its retry
    assert sorted(job_queue.unfinished_ids()) == sorted(["d", running.id, retried.id])


def test_workers_are_counted_per_tier_they_serve(job_queue: JobQueue, redis_client: redis.Redis) -> None:
    """A worker counts for every tier it claims from (found work or not), and for the tier of a
    job it heartbeats; the total counts each worker once."""
    job_queue.claim(["pro", "free"], "w-small")
    job_queue.enqueue(job("e1", tier="enterprise"))
    (running,) = job_queue.claim(["enterprise"], "w-big")
    job_queue.heartbeat(running, "w-other")  # e.g. a job adopted by another worker process
    counts = {s.tier: s.workers for s in job_queue.stats()}
    assert counts == {"enterprise": 2, "studio": 0, "pro": 1, "starter": 0, "free": 1}
    assert job_queue.active_workers(tier="pro") == 1 and job_queue.active_workers() == 3
    for key in redis_client.keys("t:workers:*"):  # as if every worker was last seen long ago
        redis_client.zadd(key, {member: 0 for member in redis_client.zrange(key, 0, -1)})
    assert {s.tier: s.workers for s in job_queue.stats()}["enterprise"] == 0


def test_a_busy_worker_stays_counted_in_every_tier_it_claims_from(
    job_queue: JobQueue, redis_client: redis.Redis
) -> None:
    """During a long job the worker's heartbeats, not only its claims, keep it present in the
    other tiers it serves: their wait estimates must not fall to "no workers"."""
    job_queue.enqueue(job("long", tier="pro"))
    (running,) = job_queue.claim(["pro", "free"], "w")
    assert running.served_tiers == ("pro", "free")
    for tier in ("pro", "free"):  # as if the claim was longer ago than the worker window
        redis_client.zadd(RedisKeys("t").tier_workers(tier), {"w": 0})
    assert job_queue.active_workers(tier="free") == 0
    assert job_queue.heartbeat(running, "w").lease_held
    assert job_queue.active_workers(tier="free") == 1 and job_queue.active_workers(tier="pro") == 1
    assert job_queue.active_workers(tier="starter") == 0


def test_every_state_change_is_an_event_in_order(job_queue: JobQueue, redis_client: redis.Redis) -> None:
    job_queue.enqueue(NewJob("a", "free", {"p": 1}, meta={"name": "fox"}))
    (claimed,) = job_queue.claim(["free"], "w")
    job_queue.report_progress(claimed, "w", 1, 2)
    job_queue.complete(claimed, {"images": []}, gpu_seconds=0.5)
    events = read_history(redis_client, RedisKeys("t"))
    assert [e.type for e in events] == ["queued", "running", "progress", "succeeded"]
    assert all(e.job_id == "a" and e.meta == {"name": "fox"} for e in events)
    assert events[-1].result == {"images": []}
    assert events[1].fields["worker"] == "w"


# -- a cancel asked while a job runs wins over every path back to the queue ---------------


def _cancelled_while_running(q: JobQueue, **kw: object) -> ClaimedJob:
    q.enqueue(job("a", **kw))
    (claimed,) = q.claim(["free"], "w")
    assert q.cancel("a") == CancelOutcome.CANCEL_REQUESTED
    return claimed


def _assert_cancelled_for_good(q: JobQueue, redis_client: redis.Redis) -> None:
    record = q.get("a")
    assert record is not None and record.state == JobState.CANCELLED and record.reason == "Cancelled"
    time.sleep(0.1)  # past any retry backoff
    q.reap()
    assert q.claim(["free"], "w2") == [], "a cancelled job must not run again"
    stats = q.stats(["free"])[0]
    assert (stats.pending, stats.inflight, stats.delayed, stats.dead) == (0, 0, 0, 0)
    final_types = ("succeeded", "failed", "cancelled")
    finals = [e.type for e in read_history(redis_client, RedisKeys("t")) if e.type in final_types]
    assert finals == ["cancelled"]
    assert redis_client.ttl(RedisKeys("t").job("a")) > 0, "a finished record expires"


def test_requeue_of_a_job_with_a_cancel_request_cancels_it(
    job_queue: JobQueue, redis_client: redis.Redis
) -> None:
    claimed = _cancelled_while_running(job_queue)
    outcome = job_queue.requeue(claimed, "Preempted", "node is going away")
    assert outcome.applied and outcome.state == JobState.CANCELLED
    _assert_cancelled_for_good(job_queue, redis_client)


def test_reap_of_a_job_with_a_cancel_request_cancels_it(redis_client: redis.Redis) -> None:
    q = short_lease_queue(redis_client)
    _cancelled_while_running(q)
    time.sleep(0.3)
    result = q.reap()
    assert (result.requeued, result.dead_lettered, result.cancelled) == (0, 0, 1)
    _assert_cancelled_for_good(q, redis_client)


def test_retry_of_a_job_with_a_cancel_request_cancels_it(
    job_queue: JobQueue, redis_client: redis.Redis
) -> None:
    claimed = _cancelled_while_running(job_queue, max_attempts=3)
    outcome = job_queue.fail(claimed, "GenerationError", "boom", retryable=True)
    assert outcome.applied and outcome.state == JobState.CANCELLED
    _assert_cancelled_for_good(job_queue, redis_client)


# -- cold starts: a worker's first claim carries its start-up ------------------------------


def test_first_claim_records_the_workers_start_and_a_later_claim_does_not(
    redis_client: redis.Redis, job_queue: JobQueue
) -> None:
    """The cold claim's start-up lands on the record and the running event; a warm claim of
    the same job (after a requeue) clears it; every running event carries the queue wait."""
    from genjob.queue import WorkerStart

    start = WorkerStart(1_000, 6_000, 4.25, pod="genjob/worker-pro-abc")
    job_queue.enqueue(job("a"))
    (claimed,) = job_queue.claim(["free"], "w1", cold=start)
    record = job_queue.get("a")
    assert record is not None and record.cold_start == start
    assert record.queue_seconds is not None and record.queue_seconds >= 0
    running = [e for e in read_history(redis_client, RedisKeys("t")) if e.type == "running"]
    assert WorkerStart.from_json(running[0].fields["cold"]) == start
    assert int(running[0].fields["wait_ms"]) >= 0

    job_queue.requeue(claimed, "Preempted", "drain")
    job_queue.claim(["free"], "w2")
    record = job_queue.get("a")
    assert record is not None and record.cold_start is None
    running = [e for e in read_history(redis_client, RedisKeys("t")) if e.type == "running"]
    assert "cold" not in running[1].fields and "wait_ms" in running[1].fields
