"""TTL after finish, the orphan sweep and queue metrics, the cache and the Lease elector."""

from __future__ import annotations

import copy
import datetime as dt
import json
import time

from kubernetes.client.exceptions import ApiException

from genjob.connect import job_queue
from genjob.connect import redis_client as make_redis_client
from genjob.queue import JobRecord, JobState, NewJob
from genjob_operator.cache import JobCache, JobView
from genjob_operator.leader import LeaseElector
from genjob_operator.reaper import Reaper, find_orphans
from genjob_operator.ttl import expired_jobs, ttl_expires_at

from .conftest import job_body


def finished(name: str, finished_at: str, **spec) -> JobView:
    body = job_body(name, **spec)
    body["status"] = {"phase": "Succeeded", "finishedAt": finished_at}
    return JobView.from_body(body)


def test_ttl_spec_value_wins_over_default():
    v = finished("a", "2026-01-01T00:00:00Z", ttlSecondsAfterFinished=10)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    assert ttl_expires_at(v, 3600) == start + 10
    assert expired_jobs([v], 3600, start + 11) == [v]
    assert expired_jobs([v], 3600, start + 9) == []


def test_ttl_none_keeps_jobs_and_unfinished_jobs_never_expire():
    v = finished("a", "2026-01-01T00:00:00Z")
    assert ttl_expires_at(v, None) is None
    running = JobView.from_body({**job_body("r"), "status": {"phase": "Running"}})
    assert ttl_expires_at(running, 0) is None


def record(job_id: str, state: str, meta: dict, enqueued_at: int = 0) -> JobRecord:
    return JobRecord.from_hash(
        {
            "id": job_id,
            "tier": "free",
            "state": state,
            "spec": "{}",
            "enqueued_at": str(enqueued_at),
            "meta": json.dumps(meta),
        }
    )


def test_orphans_are_unfinished_jobs_whose_cr_is_gone():
    recs = [
        record("1", "queued", {"uid": "1", "namespace": "a"}),
        record("2", "running", {"uid": "2", "namespace": "a"}),
        record("3", "succeeded", {"uid": "3", "namespace": "a"}),
        record("4", "queued", {}),  # gateway local mode: not ours
        record("5", "queued", {"uid": "5", "namespace": "a"}, enqueued_at=99_000),  # too young
    ]
    orphans = find_orphans(recs, known_uids={"2"}, namespaces=[], now_ms=100_000, grace_ms=60_000)
    assert [r.id for r in orphans] == ["1"]
    assert find_orphans(recs, set(), ["b"], 100_000, 60_000) == []


def _version(view: JobView, rv: str, **status: str) -> JobView:
    return JobView(**{**view.__dict__, "resource_version": rv, "status": status})


def test_cache_treats_resource_versions_as_opaque_and_never_goes_back():
    """resourceVersions are compared for equality only (these are not numbers, and a numeric
    comparison would order them wrongly): a LIST older than what the watch delivered since it
    began, and watch events older than the operator's own write, do not replace newer views."""
    c = JobCache()
    base = JobView.from_body(job_body("a"))
    listed, watched = _version(base, "b9", phase="Queued"), _version(base, "a10", phase="Running")
    listed_from = c.begin_list()
    c.observe(watched)  # the watch delivers a newer version while the LIST runs
    c.replace_all([listed], listed_from)
    assert c.get(base.uid).resource_version == "a10"

    ours = _version(base, "z1", phase="Succeeded")
    c.written(ours)  # our status write; the watch still has an older event queued
    c.observe(_version(base, "zz0", phase="Running"))
    assert c.get(base.uid).status["phase"] == "Succeeded"
    c.observe(ours)  # the watch caught up with our write
    c.observe(_version(base, "0", phase="Succeeded", reason="Completed"))  # a later change
    assert c.get(base.uid).resource_version == "0"


def test_cache_applies_the_newest_held_event_when_the_watch_skips_our_write():
    """kopf hands over only the latest of a burst of events, so our write's own version may
    never come: the newest event delivered since is applied once the catch-up time passed."""
    c = JobCache(catch_up_seconds=0.2)
    base = JobView.from_body(job_body("a"))
    c.written(_version(base, "w", phase="Running"))
    assert not c.observe(_version(base, "x", phase="Running"))
    assert not c.observe(_version(base, "y", phase="Succeeded"))
    assert c.get(base.uid).resource_version == "w"  # held back: might be older than ours
    time.sleep(0.3)
    assert c.get(base.uid).resource_version == "y"
    assert c.observe(_version(base, "z", phase="Succeeded"))


def test_cache_ignores_deleted_jobs():
    c = JobCache()
    view = JobView.from_body(job_body("a"))
    c.observe(view)
    c.forget(view.uid)
    c.observe(view)
    c.written(view)
    assert c.get(view.uid) is None


class FakeLeases:
    """CoordinationV1Api stand-in with resourceVersion conflicts."""

    def __init__(self) -> None:
        self.lease = None
        self.rv = 0

    def read_namespaced_lease(self, name, ns):
        if self.lease is None:
            raise ApiException(status=404)
        lease = copy.deepcopy(self.lease)
        lease.metadata.resource_version = str(self.rv)
        return lease

    def create_namespaced_lease(self, ns, body):
        if self.lease is not None:
            raise ApiException(status=409)
        self.lease, self.rv = body, 1

    def replace_namespaced_lease(self, name, ns, body):
        if body.metadata.resource_version != str(self.rv):
            raise ApiException(status=409)
        self.lease, self.rv = body, self.rv + 1


def test_second_replica_waits_until_the_lease_expires():
    api = FakeLeases()
    a = LeaseElector(api, "ns", "genjob", "a", lease_seconds=1)
    b = LeaseElector(api, "ns", "genjob", "b", lease_seconds=1)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert a.try_acquire_or_renew()  # renewal
    assert not b.try_acquire_or_renew()
    time.sleep(1.1)  # a stops renewing (it died)
    assert b.try_acquire_or_renew()
    assert api.lease.spec.holder_identity == "b" and api.lease.spec.lease_transitions == 1


def test_reaper_cancels_orphans_and_exports_queue_metrics(settings, redis_client, cache, metrics):
    """A queued job whose GenerationJob vanished (finalizer removed by hand while the operator
    was down) is cancelled by the sweep; the CR that still exists keeps its job; the
    per-tier gauges reflect the queue."""
    queue = job_queue(settings, make_redis_client(settings))
    live = JobView.from_body(job_body("live"))
    cache.observe(live)
    for uid in (live.uid, "gone-uid"):
        queue.enqueue(NewJob(id=uid, tier="free", spec={}, meta={"uid": uid, "namespace": "team-a"}))
    queue.enqueue(NewJob(id="local-job", tier="free", spec={}, meta={}))  # gateway local mode: not ours
    reaper = Reaper(queue, cache, metrics, 1.0, [], orphan_grace_seconds=0)
    reaper.pass_once()
    assert metrics.registry.get_sample_value("genjob_operator_pending_jobs", {"tier": "free"}) == 3
    assert reaper.sweep_orphans() == 1
    assert queue.get("gone-uid").state == JobState.CANCELLED
    assert queue.get(live.uid).state == JobState.QUEUED and queue.get("local-job").state == JobState.QUEUED
