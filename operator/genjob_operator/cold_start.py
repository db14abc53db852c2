"""The cold-start phases of a job that was its worker's first: what the pod and node add.

The worker reports its own start on the job's `running` event (process start, models loaded,
model-load seconds, its pod; `genjob.queue.WorkerStart`). For such a job the operator reads
that pod and its node once (two GETs, no write) and adds what they know: pod created, pod
scheduled, node created, node Ready, container started. All of it goes into the Running
status patch the operator writes anyway, so a cold start costs no extra API write.

Which clock said what: pod/node creation times are the API server's; the PodScheduled and
node Ready conditions are written by the scheduler and the kubelet; container start is the
kubelet's; the worker times are the worker host's. Kubernetes times have one-second
resolution. NodeClaim launch times (Karpenter) are not read: the node's creation is the
nearest thing the operator can read without a Karpenter dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("genjob.operator.coldstart")

PodAndNode = Callable[[str, str], tuple[dict[str, Any], "dict[str, Any] | None"]]


def _condition_time(obj: dict[str, Any] | None, kind: str) -> str | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return str(c.get("lastTransitionTime") or "") or None
    return None


def _container_started(pod: dict[str, Any]) -> str | None:
    starts = [
        ((s.get("state") or {}).get("running") or {}).get("startedAt")
        for s in (pod.get("status") or {}).get("containerStatuses") or []
    ]
    return min((s for s in starts if s), default=None)


def pod_node_fields(pod: dict[str, Any], node: dict[str, Any] | None) -> dict[str, Any]:
    """status.coldStart fields from a pod and its node (pure; absent facts are left out)."""
    fields = {
        "podCreatedAt": (pod.get("metadata") or {}).get("creationTimestamp"),
        "podScheduledAt": _condition_time(pod, "PodScheduled"),
        "containerStartedAt": _container_started(pod),
        "node": (pod.get("spec") or {}).get("nodeName"),
    }
    if node is not None:
        fields["nodeCreatedAt"] = (node.get("metadata") or {}).get("creationTimestamp")
        fields["nodeReadyAt"] = _condition_time(node, "Ready")
    return {k: v for k, v in fields.items() if v}


def add_pod_and_node(patch: dict[str, Any], read: PodAndNode) -> None:
    """Fill `patch["coldStart"]` from the worker's pod and node, if the worker named its pod.
    Best effort: a failed read leaves the worker's own fields (the status is written anyway)."""
    cold = patch.get("coldStart")
    if not isinstance(cold, dict):
        return
    pod_ref = str(cold.get("pod") or "")
    if "/" not in pod_ref:
        return
    namespace, name = pod_ref.split("/", 1)
    try:
        pod, node = read(namespace, name)
    except Exception as exc:
        log.warning("cannot read the cold worker's pod or node", pod=pod_ref, error=str(exc))
        return
    cold.update(pod_node_fields(pod, node))
