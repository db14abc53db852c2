"""Tenancy and the per-tenant concurrency quota: pure functions, unit-tested without a cluster.

Tenant of a namespace (`namespace_tenant`): its label settings.operator.tenant_label (default
`genjob.io/tenant`), else the tenant whose gateway namespace it is (api.namespace_template,
`genjob-{tenant}`), else its own name. Tenant of a job (`job_tenant`): its namespace's tenant.
`spec.owner` may only repeat it, or name a tenant the namespace may act for
(settings.operator.owner_namespaces, e.g. a gateway's namespace); any other owner is refused.

Quota: in each tier a tenant may have at most `tiers[tier].limits.max_concurrent_per_tenant`
admitted jobs that are not finished. Admitted means the queue holds the job; the counts come
from the queue's own records (JobQueue.count_unfinished), never from the objects a tenant can
edit or delete. Jobs over quota stay Pending (reason QuotaExceeded) and are admitted oldest
first (creationTimestamp, then namespace, then name) as slots free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from genjob.errors import InvalidSpecError
from genjob_operator.cache import JobView


class OwnerNotAllowedError(InvalidSpecError):
    """spec.owner names a tenant the job's namespace may not act for."""


def namespace_tenant(
    namespace: str, namespace_labels: Mapping[str, str], label: str, namespace_template: str
) -> str:
    """The label, else the tenant of a gateway namespace (template inverted), else the name."""
    value = namespace_labels.get(label)
    if value:
        return value
    prefix, found, suffix = namespace_template.partition("{tenant}")
    if found and namespace.startswith(prefix) and namespace.endswith(suffix):
        tenant = namespace[len(prefix) : len(namespace) - len(suffix)]
        if tenant:
            return tenant
    return namespace


def job_tenant(
    spec: Mapping[str, Any],
    namespace: str,
    tenant_of_namespace: str,
    owner_namespaces: Mapping[str, list[str]],
) -> str:
    """The tenant a job runs as; OwnerNotAllowedError when spec.owner claims another one."""
    owner = spec.get("owner")
    if not owner or owner == tenant_of_namespace:
        return tenant_of_namespace
    allowed = owner_namespaces.get(namespace, [])
    if "*" in allowed or owner in allowed:
        return str(owner)
    raise OwnerNotAllowedError(
        f"spec.owner {owner!r} is not the tenant of namespace {namespace!r} ({tenant_of_namespace!r}); "
        f"drop spec.owner or set it to {tenant_of_namespace!r} (an admin can let a namespace act "
        "for other tenants: operator.owner_namespaces)"
    )


QuotaKey = tuple[str, str]  # (tenant, tier)


@dataclass(frozen=True)
class QuotaPlan:
    """Which waiting jobs to admit now and which must keep waiting."""

    admit: list[JobView] = field(default_factory=list)
    wait: list[JobView] = field(default_factory=list)
    active: dict[QuotaKey, int] = field(default_factory=dict)


def quota_decision(
    waiting: list[JobView],
    active: dict[QuotaKey, int],
    tenant: Callable[[JobView], str],
    limit: Callable[[str], int | None],
) -> QuotaPlan:
    """Admit the oldest waiting jobs of each (tenant, tier) while slots are free.

    `waiting` are valid jobs not admitted yet; `active` the admitted unfinished counts;
    `limit(tier)` the tier's per-tenant limit (None: unlimited).
    """
    groups: dict[QuotaKey, list[JobView]] = {}
    for job in waiting:
        groups.setdefault((tenant(job), str(job.spec.get("tier"))), []).append(job)
    admit: list[JobView] = []
    wait: list[JobView] = []
    for key, jobs in groups.items():
        jobs.sort(key=lambda j: j.order_key)
        cap = limit(key[1])
        free = len(jobs) if cap is None else max(0, cap - active.get(key, 0))
        admit += jobs[:free]
        wait += jobs[free:]
    admit.sort(key=lambda j: j.order_key)
    return QuotaPlan(admit=admit, wait=wait, active=dict(active))


def quota_message(tenant: str, tier: str, active: int, cap: int) -> str:
    return (
        f"tenant {tenant!r} has {active} of {cap} jobs active in tier {tier!r}; "
        "this job is admitted automatically when a slot frees (oldest first)"
    )
