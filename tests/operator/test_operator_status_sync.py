"""The event-stream consumer against a real redis-server (worker calls made through the real
JobQueue): writes per job, sampling, at-least-once reading, the resync from queue records."""

from __future__ import annotations

import pytest

from genjob.connect import job_queue, redis_client, redis_keys
from genjob.queue import EventReader, NewJob
from genjob_operator.cache import FINALIZER, JobView
from genjob_operator.status_sync import CONSUMER, ProgressSampler, StatusSync

from .conftest import FakeKube, SyncEvents, job_body

RESULT = {
    "images": [{"uri": "file:///r/a.png", "sha256": "a" * 64, "sizeBytes": 10, "width": 64, "height": 64}],
    "seed": 7,
    "model": "tiny",
    "downscaled": False,
}


def test_progress_sampler_spaces_writes():
    s = ProgressSampler(15)
    assert s.due("j", 100.0)
    s.wrote("j", 100.0)
    assert not s.due("j", 110.0)
    assert s.due("j", 115.0)


def _setup(settings, kube: FakeKube, cache, metrics, mirror: float = 15.0):
    client = redis_client(settings)
    queue = job_queue(settings, client)
    sync = StatusSync(
        client, redis_keys(settings), cache, kube, SyncEvents(kube), metrics, mirror, queue=queue
    )
    return client, queue, sync


def _enqueue(queue, kube, cache, name: str) -> JobView:
    body = job_body(name)
    body["metadata"]["finalizers"] = [FINALIZER]  # admitted
    v = kube.add(body)
    cache.observe(v)
    meta = {"namespace": v.namespace, "name": v.name, "uid": v.uid, "model": "tiny"}
    queue.enqueue(NewJob(id=v.uid, tier="free", spec=v.spec, meta=meta))
    return v


def test_consumer_writes_three_status_patches_for_a_job(settings, redis_client, kube, cache, metrics):
    """Queued, Running, Succeeded: one write each when processed one by one; progress of a
    short job is not mirrored; each transition posts an Event."""
    client, queue, sync = _setup(settings, kube, cache, metrics)
    reader = EventReader(client, redis_keys(settings), CONSUMER)
    v = _enqueue(queue, kube, cache, "a")
    assert sync.process(reader.read(block_ms=None)) == 1
    (job,) = queue.claim(["free"], "w1")
    assert sync.process(reader.read(block_ms=None)) == 1
    queue.report_progress(job, "w1", 1, 4)
    queue.report_progress(job, "w1", 2, 4)
    assert sync.process(reader.read(block_ms=None)) == 0  # sampled out
    queue.complete(job, RESULT, gpu_seconds=0.5)
    assert sync.process(reader.read(block_ms=None)) == 1
    status = kube.objects[v.uid].status
    assert status["phase"] == "Succeeded" and status["worker"] == "w1" and status["model"] == "tiny"
    assert status["progressText"] == "4/4" and status["queuedAt"] and status["finishedAt"]
    assert len(kube.writes_of("status")) == 3
    assert [r for _, r in kube.events] == ["Queued", "Running", "Succeeded"]


def test_unacknowledged_events_are_read_again_after_a_failure(settings, redis_client, kube, cache, metrics):
    """If the API fails mid-batch nothing is acked; a new reader gets the backlog again."""
    client, queue, sync = _setup(settings, kube, cache, metrics)
    v = _enqueue(queue, kube, cache, "b")
    reader = EventReader(client, redis_keys(settings), CONSUMER)
    events = reader.read(block_ms=None)
    kube.fail_status = True
    with pytest.raises(RuntimeError):
        sync.process(events)
    kube.fail_status = False
    again = EventReader(client, redis_keys(settings), CONSUMER).read(block_ms=None)
    assert [e.job_id for e in again] == [v.uid]
    sync.process(again)
    assert kube.objects[v.uid].status["phase"] == "Queued"


def test_events_of_unknown_or_deleting_jobs_are_skipped(settings, redis_client, kube, cache, metrics):
    client, queue, sync = _setup(settings, kube, cache, metrics)
    queue.enqueue(NewJob(id="local-job", tier="free", spec={}, meta={}))  # gateway local mode
    reader = EventReader(client, redis_keys(settings), CONSUMER)
    assert sync.process(reader.read(block_ms=None)) == 0
    assert kube.writes == []


def test_resync_restores_a_final_status_whose_event_was_lost(settings, redis_client, kube, cache, metrics):
    """The stream is capped: if a job's events were trimmed away while the operator was down,
    the level-based resync gives the CR its final status from the queue record (once, and
    only after the grace period)."""
    client, queue, sync = _setup(settings, kube, cache, metrics)
    v = _enqueue(queue, kube, cache, "lost")
    (job,) = queue.claim(["free"], "w1")
    queue.report_progress(job, "w1", 4, 4)
    queue.complete(job, RESULT, gpu_seconds=0.5)
    client.xtrim(redis_keys(settings).events, maxlen=0)  # the events are gone
    finished_ms = queue.get(v.uid).finished_at_ms
    assert sync.resync(now_ms=finished_ms + 1000) == 0  # within the grace period
    assert sync.resync(now_ms=finished_ms + 120_000) == 1
    status = kube.objects[v.uid].status
    assert status["phase"] == "Succeeded" and status["reason"] == "Completed" and status["worker"] == "w1"
    assert status["result"]["images"][0]["sha256"] == "a" * 64 and status["progressText"] == "4/4"
    assert status["usage"] == {"gpuSeconds": 0.5} and status["attempts"] == 1
    assert sync.resync(now_ms=finished_ms + 180_000) == 0  # final now: nothing more to write
    assert kube.events == [("lost", "Succeeded")]
