"""The queue's part of resuming preempted jobs: checkpoint references travel with the job.

A requeue or a heartbeat records the latest checkpoint reference (fenced by the lease), the
next claim hands it over, a reaped job keeps it, and `record_resume` reports what the new
worker did with it (a `resumed` event, or a `warning` event and the reference dropped).
"""

from __future__ import annotations

import time

import redis

from genjob.keys import RedisKeys
from genjob.queue import Checkpointed, EventType, JobQueue, NewJob, read_history
from genjob.settings import QueueSettings


def _job(job_id: str) -> NewJob:
    return NewJob(id=job_id, tier="free", spec={"prompt": job_id})


def _events(q: JobQueue, job_id: str) -> list[tuple[EventType, dict[str, str]]]:
    return [(e.type, e.fields) for e in read_history(q.client, q.keys) if e.job_id == job_id]


def test_requeue_with_a_checkpoint_hands_it_to_the_next_claim(job_queue: JobQueue) -> None:
    job_queue.enqueue(_job("a"))
    (first,) = job_queue.claim(["free"], "w1")
    assert first.checkpoint == ""
    job_queue.requeue(first, "Preempted", "draining", checkpoint=Checkpointed("file:///ck/a/1.ckpt", 7))
    (second,) = job_queue.claim(["free"], "w2")
    assert second.checkpoint == "file:///ck/a/1.ckpt"
    record = job_queue.get("a")
    assert record is not None and record.checkpoint_step == 7
    requeued = [f for t, f in _events(job_queue, "a") if t == EventType.REQUEUED]
    assert requeued[-1]["checkpoint_step"] == "7"


def test_heartbeat_records_the_latest_checkpoint_and_a_reaped_job_keeps_it(redis_client: redis.Redis) -> None:
    q = JobQueue(redis_client, RedisKeys("t"), ["free"], QueueSettings(lease_seconds=0.2))
    q.enqueue(_job("a"))
    (held,) = q.claim(["free"], "w1")
    assert q.heartbeat(held, "w1", Checkpointed("s3://b/ck/a/1.ckpt", 3)).lease_held
    assert q.report_progress(held, "w1", 5, 10, Checkpointed("s3://b/ck/a/1.ckpt", 5)).lease_held
    time.sleep(0.3)
    assert q.reap().requeued == 1  # the worker was killed without notice
    (again,) = q.claim(["free"], "w2")
    assert again.checkpoint == "s3://b/ck/a/1.ckpt"
    record = q.get("a")
    assert record is not None and record.checkpoint_step == 5


def test_a_stale_holder_cannot_record_a_checkpoint(redis_client: redis.Redis) -> None:
    q = JobQueue(redis_client, RedisKeys("t"), ["free"], QueueSettings(lease_seconds=0.2))
    q.enqueue(_job("a"))
    (stale,) = q.claim(["free"], "w1")
    time.sleep(0.3)
    q.reap()
    q.claim(["free"], "w2")
    assert not q.heartbeat(stale, "w1", Checkpointed("file:///old.ckpt", 9)).lease_held
    assert not q.requeue(stale, checkpoint=Checkpointed("file:///old.ckpt", 9)).applied
    assert not q.record_resume(stale, 10, 9)
    record = q.get("a")
    assert record is not None and record.checkpoint is None


def test_record_resume_counts_saved_steps_and_a_refusal_drops_the_reference(job_queue: JobQueue) -> None:
    job_queue.enqueue(_job("a"))
    (held,) = job_queue.claim(["free"], "w1")
    job_queue.requeue(held, checkpoint=Checkpointed("file:///ck/1.ckpt", 4))
    (held,) = job_queue.claim(["free"], "w2")
    assert job_queue.record_resume(held, 10, 4)
    job_queue.requeue(held, checkpoint=Checkpointed("file:///ck/2.ckpt", 8))
    (held,) = job_queue.claim(["free"], "w3")
    assert job_queue.record_resume(held, 10, None, "checkpoint is corrupted (checksum mismatch)")
    record = job_queue.get("a")
    assert record is not None
    assert record.checkpoint is None and record.resumed_from_step == 0 and record.steps_saved == 4
    kinds = [(t, f.get("step"), f.get("reason")) for t, f in _events(job_queue, "a")]
    assert (EventType.RESUMED, "4", None) in kinds
    assert (EventType.WARNING, None, "CheckpointRefused") in kinds


def test_cancelling_a_waiting_job_orphans_its_checkpoint_for_the_workers_to_delete(
    job_queue: JobQueue,
) -> None:
    """The canceller (operator, gateway) cannot write to the result store: a job cancelled while
    queued with a checkpoint is listed for the workers, which delete it; its reference goes."""
    for job_id in ("preempted", "never-ran"):
        job_queue.enqueue(_job(job_id))
    (held,) = job_queue.claim(["free"], "w1")
    assert held.id == "preempted"
    job_queue.requeue(held, checkpoint=Checkpointed("file:///ck/preempted/1.ckpt", 6))
    job_queue.cancel("preempted")
    job_queue.cancel("never-ran")
    assert job_queue.orphaned_checkpoints() == ["preempted"]
    record = job_queue.get("preempted")
    assert record is not None and record.checkpoint is None and record.checkpoint_step is None
    job_queue.checkpoints_deleted(["preempted"])
    assert job_queue.orphaned_checkpoints() == []


def test_a_reaped_job_that_ends_for_good_orphans_its_checkpoint(redis_client: redis.Redis) -> None:
    """A worker killed without notice cannot delete the periodic checkpoint of a job the reaper
    then cancels (a cancel was asked while it ran) or dead-letters (no attempt left)."""
    q = JobQueue(redis_client, RedisKeys("t"), ["free"], QueueSettings(lease_seconds=0.2))
    q.enqueue(_job("cancelled"))
    q.enqueue(NewJob(id="dead", tier="free", spec={"prompt": "dead"}, max_attempts=1))
    q.enqueue(_job("requeued"))
    for held in q.claim(["free"], "w1", max_jobs=3):
        assert q.heartbeat(held, "w1", Checkpointed(f"file:///ck/{held.id}/1.ckpt", 2)).lease_held
    q.cancel("cancelled")
    time.sleep(0.3)
    reaped = q.reap()
    assert (reaped.cancelled, reaped.dead_lettered, reaped.requeued) == (1, 1, 1)
    assert sorted(q.orphaned_checkpoints()) == ["cancelled", "dead"]
    requeued = q.get("requeued")
    assert requeued is not None and requeued.checkpoint == "file:///ck/requeued/1.ckpt", "kept to resume"
