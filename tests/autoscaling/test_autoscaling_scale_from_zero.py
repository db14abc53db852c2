"""Scenario a: scale from zero and back.

Jobs for idle tiers -> each ScaledObject active -> a worker pod Pending -> a NodeClaim from
that tier's NodePool (Spot for pro, on-demand for enterprise) -> the node Ready -> the pod
Running and Ready -> the jobs Succeeded with their PNGs stored -> the pool back to 0 after
the cooldown -> Karpenter removes the empty node. Every step is timed from the submit.

The Spot pool's empty node goes after its NodePool's consolidateAfter (2 m). The on-demand
NodePool keeps an empty node for 10 m (consolidateAfter) before the same removal, longer than
this test waits: for enterprise it checks that the node is empty once the pool is at zero.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from .conftest import Release, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.autoscaling]

TIERS = {"pro": "spot", "enterprise": "on-demand"}
LAST_STEP = {"pro": "node removed", "enterprise": "pods gone"}
RESULTS_MOUNT = "/var/lib/genjob/results"  # the chart's results.mountPath
STEPS = (
    "ScaledObject active",
    "pod created",
    "NodeClaim launched",
    "node Ready",
    "pod Running",
    "pod Ready",
    "jobs Succeeded",
    "replicas 0",
    "pods gone",
    "node removed",
)


def _ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def _pod_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


class PoolWatch:
    """Polls one tier's pool and remembers the first moment each step of STEPS was reached."""

    def __init__(self, release: Release, tier: str, jobs: list[str], start: float) -> None:
        self.release, self.tier, self.jobs, self.start = release, tier, jobs, start
        self.at: dict[str, float] = {}
        self.node_names: set[str] = set()
        self.nodeclaims: dict[str, dict[str, Any]] = {}

    def _reach(self, step: str, reached: bool) -> None:
        if reached and step not in self.at and all(s in self.at for s in STEPS[: STEPS.index(step)]):
            self.at[step] = time.monotonic() - self.start

    def poll(self) -> bool:
        r = self.release
        pods = r.worker_pods(self.tier)
        for pod in pods:
            if pod.spec.node_name:
                self.node_names.add(pod.spec.node_name)
        pool = f"genjob-gpu-{'on-demand' if TIERS[self.tier] == 'on-demand' else 'spot'}"
        for claim in r.nodeclaims():
            if claim["metadata"]["labels"].get("karpenter.sh/nodepool") == pool:
                self.nodeclaims[claim["metadata"]["name"]] = claim
        nodes = {n.metadata.name: n for n in r.karpenter_nodes()}
        self._reach("ScaledObject active", r.scaledobject_active(self.tier))
        self._reach("pod created", bool(pods))
        self._reach("NodeClaim launched", bool(self.nodeclaims))
        self._reach("node Ready", any(_ready(nodes[n]) for n in self.node_names if n in nodes))
        self._reach("pod Running", any(p.status.phase == "Running" for p in pods))
        self._reach("pod Ready", any(_pod_ready(p) for p in pods))
        if "pod Ready" in self.at and "jobs Succeeded" not in self.at:
            self._reach("jobs Succeeded", all(p == "Succeeded" for p in r.phases(self.jobs).values()))
        self._reach("replicas 0", r.replicas(self.tier) == 0)
        self._reach("pods gone", not pods)
        self._reach("node removed", bool(self.node_names) and not (self.node_names & set(nodes)))
        return LAST_STEP[self.tier] in self.at


def test_jobs_for_idle_tiers_bring_nodes_of_the_right_capacity_type_and_leave_nothing(
    release: Release,
) -> None:
    for tier in TIERS:
        assert release.replicas(tier) == 0, f"{tier} pool is not at zero before the test"
        assert not release.worker_pods(tier)
    assert not release.karpenter_nodes(), "a GPU node exists before any job"

    start = time.monotonic()
    jobs = {tier: release.submit(tier, 1) for tier in TIERS}
    watches = {tier: PoolWatch(release, tier, jobs[tier], start) for tier in TIERS}
    wait_for(
        "both pools to go 0 -> 1 -> 0 (and the Spot node to be removed)",
        lambda: all([w.poll() for w in watches.values()]),
        timeout=600,
        interval=0.5,
        logs=[release.runner],
    )

    for tier, capacity_type in TIERS.items():
        watch = watches[tier]
        print(f"\n[autoscaling] scale from zero, tier {tier} ({capacity_type}), seconds since submit:")
        for step in STEPS[: STEPS.index(LAST_STEP[tier]) + 1]:
            print(f"  {step:22} {watch.at[step]:7.1f}")
        # The node Karpenter launched for this tier has the capacity type of the tier's NodePool.
        assert len(watch.nodeclaims) == 1, watch.nodeclaims
        claim = next(iter(watch.nodeclaims.values()))
        labels = claim["metadata"]["labels"]
        assert labels["karpenter.sh/capacity-type"] == capacity_type
        assert labels["node.kubernetes.io/instance-type"].split(".")[0] in ("g4dn", "g5")
        assert claim["status"]["capacity"]["nvidia.com/gpu"] == "1"
        # Nothing of genjob's is left on the node (enterprise: it waits there for consolidateAfter).
        node = claim["status"]["nodeName"]
        assert not [p for p in release.core.list_pod_for_all_namespaces().items if p.spec.node_name == node]
        # Each job's image is in the result store with the sha256 its status reports.
        for name in jobs[tier]:
            job = release.job(name)
            result = job["status"]["result"]
            assert job["status"]["phase"] == "Succeeded" and job["status"]["attempts"] == 1
            for image in result["images"]:
                path = release.results_dir / Path(urlparse(image["uri"]).path).relative_to(RESULTS_MOUNT)
                assert hashlib.sha256(path.read_bytes()).hexdigest() == image["sha256"]
