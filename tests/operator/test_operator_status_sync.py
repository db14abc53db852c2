"""The event-stream consumer against a real redis-server (worker calls made through the real
JobQueue): writes per job, sampling, at-least-once reading, the resync from queue records."""

from __future__ import annotations

import pytest

from genjob.connect import job_queue, redis_client, redis_keys
from genjob.queue import EventReader, NewJob, WorkerStart
from genjob_operator.cache import JobView
from genjob_operator.finalizers import FINALIZER
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


def test_a_cold_job_gets_its_pod_and_node_phases_in_the_running_write(
    settings, redis_client, kube, cache, metrics
):
    """The worker's first job: the operator reads the worker's pod and node (no write) and puts
    their times in the Running patch it writes anyway: still one write per transition."""
    client, queue, sync = _setup(settings, kube, cache, metrics)
    reads: list[tuple[str, str]] = []

    def pod_and_node(namespace: str, name: str):
        reads.append((namespace, name))
        pod = {
            "metadata": {"creationTimestamp": "2026-12-03T10:00:00Z"},
            "spec": {"nodeName": "gpu-1"},
            "status": {
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-03T10:00:20Z"}
                ],
                "containerStatuses": [{"state": {"running": {"startedAt": "2026-12-03T10:00:31Z"}}}],
            },
        }
        node = {
            "metadata": {"creationTimestamp": "2026-12-03T10:00:05Z"},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-03T10:00:19Z"}
                ]
            },
        }
        return pod, node

    sync.read_pod_and_node = pod_and_node
    reader = EventReader(client, redis_keys(settings), CONSUMER)
    v = _enqueue(queue, kube, cache, "cold")
    sync.process(reader.read(block_ms=None))
    start = WorkerStart(1_796_292_032_000, 1_796_292_040_000, 8.0, pod="genjob/worker-free-abc")
    (job,) = queue.claim(["free"], "w1", cold=start)
    assert sync.process(reader.read(block_ms=None)) == 1
    cold = kube.objects[v.uid].status["coldStart"]
    assert reads == [("genjob", "worker-free-abc")]
    assert cold["podCreatedAt"] == "2026-12-03T10:00:00Z" and cold["podScheduledAt"] == "2026-12-03T10:00:20Z"
    assert cold["node"] == "gpu-1" and cold["nodeCreatedAt"] == "2026-12-03T10:00:05Z"
    assert (
        cold["nodeReadyAt"] == "2026-12-03T10:00:19Z" and cold["containerStartedAt"] == "2026-12-03T10:00:31Z"
    )
    assert cold["modelLoadSeconds"] == 8.0 and cold["workerReadyAt"].endswith(".000Z")
    queue.complete(job, RESULT)
    sync.process(reader.read(block_ms=None))
    status = kube.objects[v.uid].status
    assert status["phase"] == "Succeeded" and status["coldStart"] == cold and status["queueSeconds"] >= 0
    assert len(kube.writes_of("status")) == 3 and len(reads) == 1


def test_a_warm_job_reads_nothing_and_a_failed_read_keeps_the_workers_fields(
    settings, redis_client, kube, cache, metrics
):
    client, queue, sync = _setup(settings, kube, cache, metrics)

    def unavailable(namespace: str, name: str):
        raise RuntimeError("pods is forbidden")

    sync.read_pod_and_node = unavailable
    reader = EventReader(client, redis_keys(settings), CONSUMER)
    warm = _enqueue(queue, kube, cache, "warm")
    queue.claim(["free"], "w1")
    cold = _enqueue(queue, kube, cache, "cold")
    queue.claim(["free"], "w2", cold=WorkerStart(1, 2, 0.5, pod="genjob/w2"))
    assert sync.process(reader.read(block_ms=None)) == 2
    assert "coldStart" not in kube.objects[warm.uid].status
    assert kube.objects[cold.uid].status["coldStart"]["pod"] == "genjob/w2"
    assert "node" not in kube.objects[cold.uid].status["coldStart"]
