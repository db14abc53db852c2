"""The event stream's consumer group: a reader that restarts misses nothing."""

from __future__ import annotations

import redis

from genjob.keys import RedisKeys
from genjob.queue import EventReader, JobQueue, NewJob


def test_a_restarted_reader_rereads_unacknowledged_events(
    job_queue: JobQueue, redis_client: redis.Redis
) -> None:
    keys = RedisKeys("t")
    reader = EventReader(redis_client, keys, consumer="op-1")
    for i in range(3):
        job_queue.enqueue(NewJob(f"j{i}", "free", {}))
    first = reader.read(count=10, block_ms=None)
    assert [e.job_id for e in first] == ["j0", "j1", "j2"]
    reader.ack(first[:1])  # crash after handling only the first event

    restarted = EventReader(redis_client, keys, consumer="op-1")
    backlog = restarted.read(count=10, block_ms=None)
    assert [e.job_id for e in backlog] == ["j1", "j2"]
    restarted.ack(backlog)
    job_queue.enqueue(NewJob("j3", "free", {}))
    assert [e.job_id for e in restarted.read(count=10, block_ms=100)] == ["j3"]
    assert restarted.read(count=10, block_ms=50) == []


def test_events_sent_while_no_reader_runs_are_delivered(
    job_queue: JobQueue, redis_client: redis.Redis
) -> None:
    keys = RedisKeys("t")
    EventReader(redis_client, keys, consumer="op-1")  # creates the group
    job_queue.enqueue(NewJob("while-down", "free", {}))
    reader = EventReader(redis_client, keys, consumer="op-1")
    assert [e.job_id for e in reader.read(block_ms=100)] == ["while-down"]


def test_a_new_consumer_adopts_what_a_dead_one_left(job_queue: JobQueue, redis_client: redis.Redis) -> None:
    keys = RedisKeys("t")
    dead = EventReader(redis_client, keys, consumer="op-dead")
    job_queue.enqueue(NewJob("a", "free", {}))
    assert len(dead.read(block_ms=None)) == 1  # received, never acknowledged
    heir = EventReader(redis_client, keys, consumer="op-new")
    adopted = heir.adopt_idle(min_idle_ms=0)
    assert [e.job_id for e in adopted] == ["a"]


def test_final_events_are_also_on_the_final_stream(job_queue: JobQueue, redis_client: redis.Redis) -> None:
    """succeeded, failed (for good) and cancelled reach `final_events` once each; queued, running,
    progress and retrying stay on the main stream only."""
    keys = RedisKeys("t")
    for job_id in ("ok", "bad", "gone"):
        job_queue.enqueue(NewJob(job_id, "free", {}, max_attempts=1))
    job_queue.cancel("gone")
    for claimed in job_queue.claim(["free"], "w1", max_jobs=2):
        job_queue.report_progress(claimed, "w1", 1, 2)
        if claimed.id == "ok":
            job_queue.complete(claimed, {"images": []})
        else:
            job_queue.fail(claimed, "GenerationError", "boom", retryable=True)  # no attempts left
    final = [(f["type"], f["job"]) for _, f in redis_client.xrange(keys.final_events)]
    assert sorted(final) == [("cancelled", "gone"), ("failed", "bad"), ("succeeded", "ok")]
    everything = {f["type"] for _, f in redis_client.xrange(keys.events)}
    assert {"queued", "running", "progress"} <= everything
