"""The admission loop against a real redis-server and an in-memory API: checks, quota,
idempotent enqueue, resume after a restart, finalization on delete."""

from __future__ import annotations

from genjob.connect import job_queue, redis_client
from genjob.jobspec import Reason
from genjob.queue import EventReader, JobState, read_history
from genjob_operator.admission_flow import Admitter, check_job
from genjob_operator.cache import JobView
from genjob_operator.finalizers import FINALIZER
from genjob_operator.kube import TenantResolver
from genjob_operator.status_sync import CONSUMER, StatusSync

from .conftest import FakeKube, SyncEvents, job_body


def make_admitter(settings, kube, cache, metrics):
    queue = job_queue(settings, redis_client(settings))
    tenants = TenantResolver(kube, settings)
    return Admitter(cache, kube, queue, settings, tenants, SyncEvents(kube), metrics, workers=2), queue


def add(kube: FakeKube, cache, name: str, created: str = "2026-01-01T00:00:00Z", **spec) -> JobView:
    v = kube.add(job_body(name, created=created, **spec))
    cache.observe(v)
    return v


def test_check_job_reasons(settings):
    """Tier limits and unknown tiers are InvalidSpec; an unknown model is ModelNotFound."""
    ok = check_job({"tier": "free", "prompt": "x"}, "t", settings)
    assert ok.spec is not None and ok.spec.model == "tiny"
    too_big = check_job({"tier": "free", "prompt": "x", "steps": 40}, "t", settings)
    assert too_big.reason == Reason.INVALID_SPEC and "steps 40" in too_big.message
    assert check_job({"tier": "gold", "prompt": "x"}, "t", settings).reason == Reason.INVALID_SPEC
    missing = check_job({"tier": "free", "prompt": "x", "model": "sdxl"}, "t", settings)
    assert missing.reason == Reason.MODEL_NOT_FOUND and "sdxl" in missing.message
    bad = check_job({"tier": "free"}, "t", settings)
    assert bad.reason == Reason.INVALID_SPEC and "spec.prompt" in bad.message


def test_admit_adds_finalizer_then_enqueues_by_uid(settings, redis_client, kube, cache, metrics):
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    v = add(kube, cache, "a")
    admitter.pass_once()
    assert FINALIZER in kube.objects[v.uid].finalizers
    rec = queue.get(v.uid)
    assert rec.state == JobState.QUEUED and rec.meta["name"] == "a" and rec.meta["namespace"] == "team-a"
    assert kube.writes_of("status") == []  # Queued comes from the event stream (status_sync)
    admitter.pass_once()
    assert len(kube.writes_of("finalizer_add")) == 1


def test_invalid_job_fails_with_reason_and_never_enqueues(settings, redis_client, kube, cache, metrics):
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    v = add(kube, cache, "bad", model="nope")
    admitter.pass_once()
    status = kube.objects[v.uid].status
    assert status["phase"] == "Failed" and status["reason"] == "ModelNotFound"
    assert queue.get(v.uid) is None
    assert kube.events == [("bad", "ModelNotFound")]


def test_quota_waits_then_admits_oldest_first(settings, redis_client, kube, cache, metrics):
    """free allows 1 job per tenant: the others stay Pending/QuotaExceeded (one write each)
    and the oldest is admitted once the first finishes."""
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    first = add(kube, cache, "j1", "2026-01-01T00:00:01Z")
    third = add(kube, cache, "j3", "2026-01-01T00:00:03Z")
    second = add(kube, cache, "j2", "2026-01-01T00:00:02Z")
    admitter.pass_once()
    admitter.pass_once()
    assert queue.get(first.uid) is not None
    for v in (second, third):
        assert kube.objects[v.uid].status["reason"] == "QuotaExceeded"
        assert queue.get(v.uid) is None
    assert len(kube.writes_of("status")) == 2
    (claimed,) = queue.claim(["free"], "w")
    queue.complete(claimed, {"images": []})  # the slot frees when the queue's record finishes
    admitter.pass_once()
    assert queue.get(second.uid) is not None and queue.get(third.uid) is None


def test_namespace_label_names_the_tenant(settings, redis_client, cache, metrics):
    """Two namespaces labelled with one tenant share its quota."""
    kube = FakeKube(labels={"ns-1": {"genjob.io/tenant": "acme"}, "ns-2": {"genjob.io/tenant": "acme"}})
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    a = kube.add(job_body("a", ns="ns-1", created="2026-01-01T00:00:01Z"))
    b = kube.add(job_body("b", ns="ns-2", created="2026-01-01T00:00:02Z"))
    cache.observe(a)
    cache.observe(b)
    admitter.pass_once()
    assert queue.get(a.uid).meta["tenant"] == "acme"
    assert queue.get(b.uid) is None


def test_restart_resumes_without_double_enqueue(settings, redis_client, kube, cache, metrics):
    """A new admitter (a restarted operator) re-ensures admitted jobs: no second enqueue."""
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    v = add(kube, cache, "a")
    admitter.pass_once()
    restarted, _ = make_admitter(settings, kube, cache, metrics)
    restarted.pass_once()
    queued = [e for e in read_history(redis_client, queue.keys) if e.type == "queued" and e.job_id == v.uid]
    assert len(queued) == 1


def test_delete_removes_queued_job_and_flags_running_one(settings, redis_client, kube, cache, metrics):
    """Finalizing: a waiting job leaves the queue, a running one gets its cancel flag, and
    the finalizer goes at once in both cases."""
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    a = add(kube, cache, "a", ns="t1")
    b = add(kube, cache, "b", ns="t2")
    admitter.pass_once()
    (claimed,) = queue.claim(["free"], "w")
    running, waiting = (a, b) if claimed.id == a.uid else (b, a)
    for v in (a, b):
        cache.observe(kube.objects[v.uid])  # the watch delivers the operator's own writes first
        cache.observe(kube._bump(kube.objects[v.uid], deleting=True))
    admitter.pass_once()
    assert FINALIZER not in kube.objects[a.uid].finalizers
    assert FINALIZER not in kube.objects[b.uid].finalizers
    assert queue.get(waiting.uid).state == JobState.CANCELLED
    assert queue.get(running.uid).cancel_requested


def test_queued_job_whose_record_redis_lost_is_queued_again(settings, redis_client, kube, cache, metrics):
    """The status resync finds a Queued CR with no queue record (Redis lost data); the
    admitter queues it again once, with a warning Event. A job whose record exists, and an
    admitted job with no phase yet, are left alone."""
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    sync = StatusSync(
        redis_client,
        queue.keys,
        cache,
        kube,
        SyncEvents(kube),
        metrics,
        15.0,
        queue=queue,
        on_lost=admitter.report_lost,
    )
    lost, kept = add(kube, cache, "lost", ns="t1"), add(kube, cache, "kept", ns="t2")
    admitter.pass_once()
    sync.process(EventReader(redis_client, queue.keys, CONSUMER).read(block_ms=None))
    assert {kube.objects[v.uid].status["phase"] for v in (lost, kept)} == {"Queued"}
    fresh = add(kube, cache, "fresh", ns="t3")
    cache.observe(kube.add_finalizer(fresh))  # admitted, enqueue not done yet: no phase
    redis_client.delete(queue.keys.job(lost.uid))
    redis_client.lrem(queue.keys.pending("free"), 0, lost.uid)

    assert sync.resync() == 0
    admitter.pass_once()
    assert queue.get(lost.uid).state == JobState.QUEUED
    assert [e for e in kube.events if e[1] == "QueueRecordLost"] == [("lost", "QueueRecordLost")]
    assert metrics.registry.get_sample_value("genjob_operator_queue_records_lost_total") == 1
    sync.resync()
    admitter.pass_once()
    queued = [e.job_id for e in read_history(redis_client, queue.keys) if e.type == "queued"]
    assert sorted(queued) == sorted([lost.uid, lost.uid, kept.uid, fresh.uid])
    assert len([e for e in kube.events if e[1] == "QueueRecordLost"]) == 1


def test_a_full_redis_keeps_the_job_pending_with_a_reason_then_admits_it(
    settings, redis_client, kube, cache, metrics
):
    """Redis at maxmemory (noeviction) refuses the enqueue: the job stays Pending with reason
    QueueFull (one status write, one Event), and is queued on a pass after Redis has room."""
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", max(1, int(redis_client.info("memory")["used_memory"]) // 2))
    try:
        v = add(kube, cache, "big")
        admitter.pass_once()
        admitter.pass_once()
        status = kube.objects[v.uid].status
        assert status["phase"] == "Pending" and status["reason"] == "QueueFull", status
        assert "memory" in status["message"]
        assert len(kube.writes_of("status")) == 1 and kube.events == [("big", "QueueFull")]
        assert queue.get(v.uid) is None
    finally:
        redis_client.config_set("maxmemory", 0)
    admitter.pass_once()
    assert queue.get(v.uid) is not None and queue.get(v.uid).state == JobState.QUEUED
