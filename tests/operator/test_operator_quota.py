"""Tenancy and quota decisions (pure functions)."""

from __future__ import annotations

import pytest

from genjob_operator.cache import JobView
from genjob_operator.finalizers import FINALIZER
from genjob_operator.quota import OwnerNotAllowedError, job_tenant, namespace_tenant, quota_decision

from .conftest import job_body


def view(name: str, created: str, admitted: bool = False, phase: str | None = None, **spec) -> JobView:
    body = job_body(name, created=created, **spec)
    if admitted:
        body["metadata"]["finalizers"] = [FINALIZER]
    if phase:
        body["status"] = {"phase": phase}
    return JobView.from_body(body)


def test_the_namespace_names_the_tenant_and_an_owner_may_only_repeat_it():
    """The label, else the gateway namespace's tenant, else the namespace name; spec.owner may
    name another tenant only where operator.owner_namespaces allows it."""
    label, template = "genjob.io/tenant", "genjob-{tenant}"
    assert namespace_tenant("ns", {label: "other"}, label, template) == "other"
    assert namespace_tenant("genjob-acme", {}, label, template) == "acme"
    assert namespace_tenant("genjob-", {}, label, template) == "genjob-"
    assert namespace_tenant("ns", {}, label, template) == "ns"
    assert job_tenant({}, "ns", "acme", {}) == "acme"
    assert job_tenant({"owner": "acme"}, "ns", "acme", {}) == "acme"
    with pytest.raises(OwnerNotAllowedError, match="'globex' is not the tenant of namespace 'ns'"):
        job_tenant({"owner": "globex"}, "ns", "acme", {"other": ["*"]})
    assert job_tenant({"owner": "globex"}, "gw", "gw", {"gw": ["*"]}) == "globex"
    assert job_tenant({"owner": "globex"}, "gw", "gw", {"gw": ["globex"]}) == "globex"


def test_oldest_first_admission_within_free_slots():
    """With 1 of 2 slots used, only the oldest waiting job is admitted."""
    jobs = [view("new-2", "2026-01-01T00:00:03Z"), view("new-1", "2026-01-01T00:00:02Z")]
    tenant = lambda v: "t"  # noqa: E731
    plan = quota_decision(jobs, {("t", "free"): 1}, tenant, lambda tier: 2)
    assert [j.name for j in plan.admit] == ["new-1"]
    assert [j.name for j in plan.wait] == ["new-2"]


def test_tenants_have_separate_quotas():
    jobs = [view("a", "2026-01-01T00:00:01Z", ns="alpha"), view("b", "2026-01-01T00:00:01Z", ns="beta")]
    plan = quota_decision(jobs, {("alpha", "free"): 0}, lambda v: v.namespace, lambda tier: 1)
    assert sorted(j.name for j in plan.admit) == ["a", "b"]


def test_unknown_limit_admits_everything():
    jobs = [view(f"j{i}", f"2026-01-01T00:00:0{i}Z") for i in range(3)]
    plan = quota_decision(jobs, {}, lambda v: "t", lambda tier: None)
    assert len(plan.admit) == 3
