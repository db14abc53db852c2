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


def test_cache_keeps_newest_version_and_ignores_deleted():
    c = JobCache()
    body = job_body("a")
    old = JobView.from_body(body)
    body["metadata"]["resourceVersion"] = str(int(old.resource_version) + 1)
    new = JobView.from_body(body)
    c.observe(new)
    c.replace_all([old])
    assert c.get(new.uid).resource_version == new.resource_version
    c.forget(new.uid)
    c.observe(new)
    assert c.get(new.uid) is None


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
