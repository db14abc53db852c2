"""Scenarios c, d and e: Karpenter disruption, Spot interruption and a voluntary drain.

c. Karpenter's consolidation does not disrupt a node whose worker is busy (the worker marks its
   own pod karpenter.sh/do-not-disrupt) and does once the worker is idle; drift (eventual
   disruption, bounded by the NodePool's terminationGracePeriod) drains a busy worker gracefully.
d. Spot interruption with notice (Karpenter deletes the NodeClaim, as its interruption queue
   handler does) and without (the instance vanishes: its Node object is gone at once): the
   jobs come back (Preempted, attempt not counted; or reaped after the lease, counted) and
   finish on another node; no job is lost and none runs to completion twice.
e. `kubectl drain` of worker nodes honours the pool's PodDisruptionBudget.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from genjob.queue import EventType

from .conftest import NAMESPACE, Release, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.autoscaling]

BUSY = "karpenter.sh/do-not-disrupt"
# ~55 s alone on this machine, minutes under load: outlasts the gap between two workers of a
# burst becoming ready, so each takes one job (at 384x384, 40 steps, 7 s alone, the first worker
# ran both jobs before the second was ready and scenario d never saw two busy workers).
LONG = {"width": 768, "height": 768, "steps": 75}
# ~1.5 minutes: outlasts Karpenter's drift detection.
LONGER = {"width": 512, "height": 512, "steps": 75}
# Several minutes: outlasts consolidateAfter (2 m), and the workers' drain window (115 s) plus a
# replacement's start, so a drained worker checkpoints and requeues its job (Preempted) while the
# other keeps running until the replacement is Ready. The tests cancel these jobs when done.
LONGEST = {"width": 768, "height": 768, "steps": 75, "numImages": 4}


def _running_on(release: Release, tier: str, names: list[str], count: int) -> dict[str, Any]:
    """Wait until `count` of the jobs run on busy worker pods; return {job name: pod}."""

    def busy_pods() -> dict[str, Any] | None:
        phases = release.phases(names)
        pods = [
            p
            for p in release.worker_pods(tier)
            if (p.metadata.annotations or {}).get(BUSY) == "true" and not p.metadata.deletion_timestamp
        ]
        running = [n for n, ph in phases.items() if ph == "Running"]
        if len(running) < count or len(pods) < count:
            return None
        by_worker = {release.job(n)["status"].get("worker"): n for n in running}
        return {by_worker[p.metadata.name]: p for p in pods if p.metadata.name in by_worker} or None

    return wait_for(f"{count} jobs running on busy {tier} workers", busy_pods, timeout=300, interval=1)


def _claim_of(release: Release, node_name: str) -> str:
    node = release.core.read_node(node_name)
    return next(
        c["metadata"]["name"]
        for c in release.nodeclaims()
        if c["status"].get("nodeName") == node.metadata.name
    )


@pytest.fixture(autouse=True)
def _cancel_leftover_jobs(release: Release) -> Iterator[None]:
    """A scenario that fails midway must not leave long jobs running into the next one."""
    yield
    release.kubectl("delete", "generationjobs", "--all", "-n", NAMESPACE, "--wait=false")


def _no_nodes_in(release: Release, nodepool: str) -> None:
    """Remove the NodePool's nodes (an earlier scenario's empty node waits out consolidateAfter),
    so the next pod gets a node launched for it."""
    release.kubectl("delete", "nodeclaims", "-l", f"karpenter.sh/nodepool={nodepool}", "--wait=false")
    wait_for(
        f"no {nodepool} nodes",
        lambda: (
            not [
                n for n in release.karpenter_nodes() if n.metadata.labels["karpenter.sh/nodepool"] == nodepool
            ]
        ),
        timeout=180,
        interval=1,
    )


def _pool_at_zero(release: Release, tier: str, nodepool: str = "genjob-gpu-spot") -> None:
    """The tier's pool at zero and its NodePool without nodes: every scenario starts from a cold
    pool whose nodes are launched from the NodePool as it is now (a node launched while the drift
    scenario had changed the template is drifted once it is restored, and Karpenter would drain
    the next scenario's workers from it)."""
    wait_for(
        f"{tier} pool at zero", lambda: release.replicas(tier) == 0 and not release.worker_pods(tier), 300
    )
    _no_nodes_in(release, nodepool)


def test_consolidation_waits_for_a_busy_worker_and_takes_its_node_once_idle(release: Release) -> None:
    """Consolidation is graceful disruption: a pod marked karpenter.sh/do-not-disrupt blocks it.
    The worker runs on a g5.xlarge (the NodePool briefly allowed only g5); once g4dn is allowed
    again a cheaper node would do, yet Karpenter leaves the node alone while the job runs
    (DisruptionBlocked) and takes it once the worker is idle."""
    tier, nodepool = "pro", "genjob-gpu-spot"
    _pool_at_zero(release, tier, nodepool)
    history_start = len(release.runner.history)
    requirements = release.custom.get_cluster_custom_object("karpenter.sh", "v1", "nodepools", nodepool)[
        "spec"
    ]["template"]["spec"]["requirements"]
    family = next(i for i, r in enumerate(requirements) if r["key"] == "karpenter.k8s.aws/instance-family")
    path = f"/spec/template/spec/requirements/{family}/values"
    original = requirements[family]["values"]
    release.kubectl("patch", "nodepool", nodepool, "--type=json", "-p", json.dumps([
        {"op": "replace", "path": path, "value": ["g5"]}]))  # fmt: skip
    try:
        names = release.submit(tier, 1, **LONGEST)
        (pod,) = _running_on(release, tier, names, 1).values()
    finally:
        release.kubectl("patch", "nodepool", nodepool, "--type=json", "-p", json.dumps([
            {"op": "replace", "path": path, "value": original}]))  # fmt: skip
    node = release.core.read_node(pod.spec.node_name)
    assert node.metadata.labels["node.kubernetes.io/instance-type"].startswith("g5."), node.metadata.labels

    claim = _claim_of(release, node.metadata.name)
    busy_pod = f"Pod={NAMESPACE}/{pod.metadata.name}"

    def blocked() -> bool:
        """Karpenter's DisruptionBlocked event on the NodeClaim names the busy worker's annotation."""
        events = release.core.list_event_for_all_namespaces(field_selector=f"involvedObject.name={claim}")
        return any(
            e.reason == "DisruptionBlocked"
            and "do-not-disrupt" in (e.message or "")
            and busy_pod in e.message
            for e in events.items
        )

    # While the job runs: Karpenter sees the cheaper option but is blocked by the busy worker.
    while release.phases(names)[names[0]] == "Running":
        taints = [t.key for t in release.core.read_node(node.metadata.name).spec.taints or []]
        assert "karpenter.sh/disrupted" not in taints, f"busy node {node.metadata.name} disrupted: {taints}"
        if blocked():
            break
        time.sleep(2)
    assert blocked(), "Karpenter never considered the node: the job ended before consolidateAfter"
    # Make the worker idle: cancel the job (deleting the GenerationJob cancels it at the next step).
    release.kubectl("delete", "generationjob", names[0], "-n", NAMESPACE, "--wait=false")
    wait_for(
        f"Karpenter to take node {node.metadata.name} once its worker is idle",
        lambda: node.metadata.name not in {n.metadata.name for n in release.karpenter_nodes()},
        timeout=400,
        interval=2,
        logs=[release.runner],
    )
    stops = [e for e in release.runner.history[history_start:] if e["event"] == "sigterm"]
    assert all(e["annotations"].get(BUSY) != "true" for e in stops if e["node"] == node.metadata.name), stops


def test_drift_drains_a_busy_worker_gracefully_and_loses_nothing(release: Release) -> None:
    """Drift is eventual disruption: with a NodePool terminationGracePeriod Karpenter proceeds
    despite do-not-disrupt and deletes the busy pod at (node grace - pod grace), at once on Spot
    (2 m, 120 s). The worker drains: it finishes the job or checkpoints and requeues it
    (Preempted, not counted), and the job completes once."""
    tier, nodepool = "pro", "genjob-gpu-spot"
    _pool_at_zero(release, tier, nodepool)
    history_start = len(release.runner.history)
    names = release.submit(tier, 1, **LONGER)
    (pod,) = _running_on(release, tier, names, 1).values()
    patch = {"spec": {"template": {"metadata": {"labels": {"genjob.io/test-drift": "1"}}}}}
    release.kubectl("patch", "nodepool", nodepool, "--type=merge", "-p", json.dumps(patch))
    try:
        wait_for(
            f"the drifted node {pod.spec.node_name} to go",
            lambda: pod.spec.node_name not in {n.metadata.name for n in release.karpenter_nodes()},
            timeout=300,
            interval=1,
            logs=[release.runner],
        )
        release.wait_succeeded(names, timeout=600)
    finally:
        patch["spec"]["template"]["metadata"]["labels"]["genjob.io/test-drift"] = None
        release.kubectl("patch", "nodepool", nodepool, "--type=merge", "-p", json.dumps(patch))
    ours = f"{NAMESPACE}/{pod.metadata.name}"
    events = [e["event"] for e in release.runner.history[history_start:] if e["pod"] == ours]
    assert events[: events.index("sigterm") + 1][-1] == "sigterm" and "node-gone-sigkill" not in events, (
        events
    )
    assert release.job(names[0])["status"]["attempts"] == 1
    assert release.count_events(names, EventType.SUCCEEDED) == {names[0]: 1}


def test_spot_reclaims_with_and_without_notice_lose_no_job_and_run_none_twice(release: Release) -> None:
    tier = "pro"
    _pool_at_zero(release, tier)
    names = release.submit(tier, 2, **LONG)
    running = _running_on(release, tier, names, 2)
    (noticed_job, noticed_pod), (sudden_job, sudden_pod) = sorted(running.items())
    history_start = len(release.runner.history)

    # With notice: Karpenter's interruption handling deletes the NodeClaim; the Spot NodePool's
    # terminationGracePeriod (the 2-minute notice) makes it delete even the busy worker at once.
    noticed_node = noticed_pod.spec.node_name
    release.kubectl("delete", "nodeclaim", _claim_of(release, noticed_node), "--wait=false")
    # Without notice: the instance is gone; its Node object disappears with no drain.
    sudden_node = sudden_pod.spec.node_name
    release.kubectl("patch", "node", sudden_node, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    release.kubectl("delete", "node", sudden_node, "--wait=false")

    release.wait_succeeded(names, timeout=720)
    events = release.runner.history[history_start:]
    noticed = [e["event"] for e in events if e["pod"] == f"{NAMESPACE}/{noticed_pod.metadata.name}"]
    sudden = [e["event"] for e in events if e["pod"] == f"{NAMESPACE}/{sudden_pod.metadata.name}"]
    assert noticed[0] == "sigterm", noticed  # told to drain while busy, before the instance went
    assert sudden[0] == "node-gone-sigkill", sudden
    assert set(release.count_events(names, EventType.SUCCEEDED).values()) == {1}  # none ran twice
    noticed_status = release.job(noticed_job)["status"]
    sudden_status = release.job(sudden_job)["status"]
    requeues = release.count_events([noticed_job], EventType.REQUEUED)[noticed_job]
    # The noticed job finished in its drain window, or went back as Preempted (not counted).
    assert noticed_status["attempts"] == 1, (noticed_status, requeues)
    # The killed worker's job came back through its expired lease (an attempt is counted).
    assert sudden_status["attempts"] == 2, sudden_status
    print(f"\n[autoscaling] spot: noticed job requeued {requeues}x; pod events {noticed} / {sudden}")


def test_draining_worker_nodes_honours_the_pool_disruption_budget(release: Release) -> None:
    """maxUnavailable 1: draining both nodes of a two-worker pool evicts one worker, and the
    second only after a replacement is Ready (its eviction is refused until then)."""
    tier = "pro"
    _pool_at_zero(release, tier)
    names = release.submit(tier, 2, **LONGEST)
    pods = {f"{NAMESPACE}/{p.metadata.name}" for p in _running_on(release, tier, names, 2).values()}
    nodes = sorted(
        {release.core.read_namespaced_pod(p.split("/")[1], NAMESPACE).spec.node_name for p in pods}
    )
    assert len(nodes) == 2, "one GPU per node: two workers, two nodes"
    history_start = len(release.runner.history)
    drain = release.kubectl(
        "drain",
        *nodes,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=400s",
        check=False,
        timeout=420,
    )
    assert drain.returncode == 0, drain.stdout + drain.stderr
    assert "disruption budget" in drain.stdout + drain.stderr  # the second eviction had to wait
    events = release.runner.history[history_start:]
    stops = [i for i, e in enumerate(events) if e["event"] == "sigterm" and e["pod"] in pods]
    assert len(stops) == 2, events
    between = events[stops[0] : stops[1]]
    assert any(e["event"] == "ready" and e["pod"] not in pods for e in between), between
    # The PDB is what this scenario is about; the jobs' own fate on preemption is scenario d's.
    release.kubectl("delete", "generationjob", *names, "-n", NAMESPACE, "--wait=false")
