"""Mark the worker's own pod as busy while it holds jobs, and clear the mark when idle.

Busy means two annotations on the pod:
- `karpenter.sh/do-not-disrupt: "true"`: Karpenter does not consolidate or drift the node
  away from under a running generation;
- `controller.kubernetes.io/pod-deletion-cost: "10000"`: on scale-down the ReplicaSet
  deletes idle pods (cost 0 by default) first.
Idle removes both (null values in a JSON merge patch delete the keys).

Only in a cluster (POD_NAME and POD_NAMESPACE set by the downward API, in-cluster config
loadable) and with `worker.annotate_pod` on; the worker patches its own pod only (RBAC:
`patch` on `pods`). A failed patch is logged and never stops the worker; the marker only
patches when the wanted state differs from the last state written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import structlog

DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
BUSY_DELETION_COST = 10000
MERGE_PATCH = "application/merge-patch+json"
PATCH_TIMEOUT_SECONDS = 5.0

log = structlog.get_logger()


def build_busy_patch(deletion_cost: int = BUSY_DELETION_COST) -> dict[str, Any]:
    """Merge patch that marks a pod busy."""
    return {"metadata": {"annotations": {DO_NOT_DISRUPT: "true", DELETION_COST: str(deletion_cost)}}}


def build_idle_patch() -> dict[str, Any]:
    """Merge patch that removes both busy annotations."""
    return {"metadata": {"annotations": {DO_NOT_DISRUPT: None, DELETION_COST: None}}}


class PodMarker(Protocol):
    """What the loop calls when it becomes busy or idle."""

    def set_busy(self, busy: bool) -> None: ...


class NoPodMarker:
    """Outside a cluster, or with annotate_pod off: nothing to mark."""

    def set_busy(self, busy: bool) -> None:
        return None


class KubernetesPodMarker:
    """Patches the annotations of one pod through a `CoreV1Api`."""

    def __init__(self, core_api: Any, name: str, namespace: str) -> None:
        self.core_api = core_api
        self.name = name
        self.namespace = namespace
        self.state: bool | None = None  # last state written; None: unknown (start, or a failed patch)

    def set_busy(self, busy: bool) -> None:
        if busy == self.state:
            return
        body = build_busy_patch() if busy else build_idle_patch()
        try:
            self.core_api.patch_namespaced_pod(
                self.name,
                self.namespace,
                body,
                _content_type=MERGE_PATCH,
                _request_timeout=PATCH_TIMEOUT_SECONDS,
            )
        except Exception as exc:  # never fatal: the mark is an optimisation of disruption
            self.state = None
            log.warning("pod annotation failed", pod=self.name, busy=busy, error=str(exc)[:500])
            return
        self.state = busy
        log.debug("pod annotated", pod=self.name, busy=busy)


def pod_marker_from_environment(annotate_pod: bool, environ: Mapping[str, str]) -> PodMarker:
    """A Kubernetes marker when running in a cluster with annotate_pod on, else a no-op one."""
    name, namespace = environ.get("POD_NAME"), environ.get("POD_NAMESPACE")
    if not annotate_pod or not name or not namespace:
        return NoPodMarker()
    try:
        from kubernetes import client, config

        config.load_incluster_config()
    except Exception as exc:
        log.warning("not annotating the pod: no in-cluster config", error=str(exc)[:300])
        return NoPodMarker()
    return KubernetesPodMarker(client.CoreV1Api(), name, namespace)
