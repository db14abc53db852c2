"""Hostile tenants in cluster mode (issue 15.3): a user who can create GenerationJobs in its
namespace tries to run as another tenant, to escape its quota by stripping, pre-setting or
removing genjob's finalizer. Real redis-server, in-memory API (FakeKube)."""

from __future__ import annotations

from genjob.jobspec import Reason
from genjob.queue import JobState
from genjob.settings import GenjobSettings
from genjob_operator.finalizers import FINALIZER

from .conftest import FakeKube
from .test_operator_admission import add, make_admitter


def write(cache, view) -> None:
    """An operator write (status sync, admission) as the watch then delivers it."""
    cache.written(view)
    cache.observe(view)


def test_an_owner_naming_another_tenant_is_refused(settings, redis_client, kube, cache, metrics):
    """Namespace team-a is tenant team-a: a job naming owner acme fails InvalidSpec, never runs."""
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    forged = add(kube, cache, "forged", owner="acme")
    own = add(kube, cache, "own", ns="team-b", owner="team-b")
    admitter.pass_once()
    status = kube.objects[forged.uid].status
    assert status["phase"] == "Failed" and status["reason"] == str(Reason.INVALID_SPEC)
    assert "acme" in status["message"] and "team-a" in status["message"]
    assert queue.get(forged.uid) is None
    assert queue.get(own.uid).meta["tenant"] == "team-b"


def test_a_namespace_allowed_to_act_for_tenants_may_name_them(settings, redis_client, cache, metrics):
    """operator.owner_namespaces lets a namespace (e.g. a gateway's) name the tenants listed."""
    allowed = GenjobSettings(
        **{**settings.model_dump(), "operator": {"owner_namespaces": {"gw": ["*"], "ops": ["acme"]}}}
    )
    kube = FakeKube()
    admitter, queue = make_admitter(allowed, kube, cache, metrics)
    any_tenant = add(kube, cache, "a", ns="gw", owner="globex")
    listed = add(kube, cache, "b", ns="ops", owner="acme")
    unlisted = add(kube, cache, "c", ns="ops", owner="globex")
    admitter.pass_once()
    assert queue.get(any_tenant.uid).meta["tenant"] == "globex"
    assert queue.get(listed.uid).meta["tenant"] == "acme"
    assert queue.get(unlisted.uid) is None
    assert kube.objects[unlisted.uid].status["reason"] == str(Reason.INVALID_SPEC)


def test_the_gateway_namespace_of_a_tenant_names_it(settings, redis_client, kube, cache, metrics):
    """An unlabelled namespace named by api.namespace_template (genjob-{tenant}) is that tenant's,
    so the gateway's jobs (owner = the key's tenant) are admitted without a namespace label."""
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    v = add(kube, cache, "a", ns="genjob-acme", owner="acme")
    admitter.pass_once()
    assert queue.get(v.uid).meta["tenant"] == "acme"


def test_a_label_names_the_tenant_and_an_owner_must_match_it(settings, redis_client, cache, metrics):
    kube = FakeKube(labels={"ns-1": {"genjob.io/tenant": "acme"}})
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    same = add(kube, cache, "same", ns="ns-1", owner="acme")
    other = add(kube, cache, "other", ns="ns-1", owner="ns-1")
    admitter.pass_once()
    assert queue.get(same.uid).meta["tenant"] == "acme"
    assert queue.get(other.uid) is None


def test_quota_holds_when_a_running_jobs_object_is_deleted_without_its_finalizer(
    settings, redis_client, kube, cache, metrics
):
    """Attack: strip the finalizer of an admitted job and delete the object; the job still runs,
    so the tenant's slot stays taken (quota counts queue records, not objects)."""
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    first = add(kube, cache, "j1", "2026-01-01T00:00:01Z")
    admitter.pass_once()
    (claimed,) = queue.claim(["free"], "w")
    assert claimed.id == first.uid
    write(cache, kube.patch_status(kube.objects[first.uid], {"phase": "Running"}))
    cache.forget(first.uid)  # finalizer stripped and object deleted: gone from the watch
    second = add(kube, cache, "j2", "2026-01-01T00:00:02Z")
    admitter.pass_once()
    assert queue.get(second.uid) is None
    assert kube.objects[second.uid].status["reason"] == str(Reason.QUOTA_EXCEEDED)
    queue.complete(claimed, {"images": []})
    admitter.pass_once()
    assert queue.get(second.uid).state == JobState.QUEUED


def test_a_finalizer_set_at_creation_does_not_skip_quota(settings, redis_client, kube, cache, metrics):
    """Attack: create the job with genjob's finalizer already on it, so it looks admitted."""
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    first = add(kube, cache, "j1", "2026-01-01T00:00:01Z")
    admitter.pass_once()
    cache.observe(kube.objects[first.uid])  # the watch delivers the finalizer
    sneaky = add(kube, cache, "j2", "2026-01-01T00:00:02Z")
    cache.observe(kube._bump(sneaky, finalizers=(FINALIZER,)))
    admitter.pass_once()
    assert queue.get(first.uid) is not None
    assert queue.get(sneaky.uid) is None
    assert kube.objects[sneaky.uid].status["reason"] == str(Reason.QUOTA_EXCEEDED)


def test_a_stripped_finalizer_is_put_back(settings, redis_client, kube, cache, metrics):
    """An admitted, unfinished job always carries the finalizer again after a pass, so deleting
    it reaches the operator (which takes it out of the queue)."""
    admitter, queue = make_admitter(settings, kube, cache, metrics)
    v = add(kube, cache, "a")
    admitter.pass_once()
    write(cache, kube.patch_status(kube.objects[v.uid], {"phase": "Queued"}))
    cache.observe(kube.remove_finalizer(kube.objects[v.uid]))  # a user strips it
    admitter.pass_once()
    assert FINALIZER in kube.objects[v.uid].finalizers
    cache.observe(kube.objects[v.uid])  # the watch delivers it
    cache.observe(kube._bump(kube.objects[v.uid], deleting=True))
    admitter.pass_once()
    assert queue.get(v.uid).state == JobState.CANCELLED
