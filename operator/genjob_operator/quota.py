"""Tenancy and the per-tenant concurrency quota: pure functions, unit-tested without a cluster.

Tenant of a job: `spec.owner` wins, then the namespace label (settings.operator.tenant_label,
default `genjob.io/tenant`), then the namespace name.

Quota: in each tier a tenant may have at most `tiers[tier].limits.max_concurrent_per_tenant`
admitted jobs that are not finished (admitted = carries the operator's finalizer, i.e.
queued or running). Jobs over quota stay Pending (reason QuotaExceeded) and are admitted
oldest first (creationTimestamp, then namespace, then name) as slots free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from genjob_operator.cache import JobView


def tenant_of(
    spec: Mapping[str, Any], namespace: str, namespace_labels: Mapping[str, str], label: str
) -> str:
    """spec.owner, else the namespace's tenant label, else the namespace name."""
    owner = spec.get("owner")
    if owner:
        return str(owner)
    value = namespace_labels.get(label)
    return value if value else namespace


QuotaKey = tuple[str, str]  # (tenant, tier)


@dataclass(frozen=True)
class QuotaPlan:
    """Which waiting jobs to admit now and which must keep waiting."""

    admit: list[JobView] = field(default_factory=list)
    wait: list[JobView] = field(default_factory=list)
    active: dict[QuotaKey, int] = field(default_factory=dict)


def active_counts(jobs: list[JobView], tenant: Callable[[JobView], str]) -> dict[QuotaKey, int]:
    """Admitted, unfinished jobs per (tenant, tier)."""
    counts: dict[QuotaKey, int] = {}
    for job in jobs:
        if job.admitted and not job.is_final:
            key = (tenant(job), str(job.spec.get("tier")))
            counts[key] = counts.get(key, 0) + 1
    return counts


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
