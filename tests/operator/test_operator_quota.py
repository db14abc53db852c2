"""Tenancy and quota decisions (pure functions)."""

from __future__ import annotations

from genjob_operator.cache import JobView
from genjob_operator.finalizers import FINALIZER
from genjob_operator.quota import active_counts, quota_decision, tenant_of

from .conftest import job_body


def view(name: str, created: str, admitted: bool = False, phase: str | None = None, **spec) -> JobView:
    body = job_body(name, created=created, **spec)
    if admitted:
        body["metadata"]["finalizers"] = [FINALIZER]
    if phase:
        body["status"] = {"phase": phase}
    return JobView.from_body(body)


def test_owner_wins_over_label_and_namespace():
    """spec.owner beats the namespace label, which beats the namespace name."""
    label = "genjob.io/tenant"
    assert tenant_of({"owner": "acme"}, "ns", {label: "other"}, label) == "acme"
    assert tenant_of({}, "ns", {label: "other"}, label) == "other"
    assert tenant_of({}, "ns", {}, label) == "ns"


def test_oldest_first_admission_within_free_slots():
    """With 1 of 2 slots used, only the oldest waiting job is admitted."""
    jobs = [
        view("running", "2026-01-01T00:00:00Z", admitted=True, phase="Running"),
        view("new-2", "2026-01-01T00:00:03Z"),
        view("new-1", "2026-01-01T00:00:02Z"),
    ]
    tenant = lambda v: "t"  # noqa: E731
    active = active_counts(jobs, tenant)
    assert active == {("t", "free"): 1}
    plan = quota_decision([j for j in jobs if j.waiting_for_admission], active, tenant, lambda tier: 2)
    assert [j.name for j in plan.admit] == ["new-1"]
    assert [j.name for j in plan.wait] == ["new-2"]


def test_finished_jobs_free_their_slot_and_tenants_are_separate():
    """Finished jobs do not count; another tenant has its own quota."""
    jobs = [
        view("done", "2026-01-01T00:00:00Z", admitted=True, phase="Succeeded"),
        view("a", "2026-01-01T00:00:01Z", owner="alpha"),
        view("b", "2026-01-01T00:00:01Z", owner="beta"),
    ]

    def tenant(v: JobView) -> str:
        return tenant_of(v.spec, v.namespace, {}, "x")

    plan = quota_decision(jobs[1:], active_counts(jobs, tenant), tenant, lambda tier: 1)
    assert sorted(j.name for j in plan.admit) == ["a", "b"]


def test_unknown_limit_admits_everything():
    jobs = [view(f"j{i}", f"2026-01-01T00:00:0{i}Z") for i in range(3)]
    plan = quota_decision(jobs, {}, lambda v: "t", lambda tier: None)
    assert len(plan.admit) == 3
