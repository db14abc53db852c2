"""Every call the operator makes to the Kubernetes API, in one place, each write counted.

The API server is the scarce resource, so each write goes through `KubeWriter` and is
counted by kind in `genjob_operator_api_writes_total` (see docs/operator.md for the
budget per job). Reads are the initial LIST of GenerationJobs, namespace lookups
(cached by `TenantResolver`) and, once per cold job, its worker's pod and node (cold_start.py).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from genjob.crd import GROUP, KIND, PLURAL, VERSION
from genjob.settings import GenjobSettings
from genjob_operator.cache import JobView
from genjob_operator.finalizers import FINALIZER, add_finalizer_ops, remove_finalizer_ops
from genjob_operator.metrics import OperatorMetrics
from genjob_operator.quota import job_tenant, namespace_tenant

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class ObjectGone(Exception):
    """The GenerationJob was deleted (404) or replaced by a new one with the same name."""


def now_rfc3339(ts: float | None = None) -> str:
    moment = dt.datetime.fromtimestamp(time.time() if ts is None else ts, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(
    view_ns: str, name: str, uid: str, reason: str, message: str, warning: bool, instance: str
) -> dict[str, Any]:
    """A core/v1 Event about a GenerationJob."""
    now = now_rfc3339()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": view_ns},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": name,
            "namespace": view_ns,
            "uid": uid,
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": "genjob-operator"},
        "reportingComponent": "genjob.io/operator",
        "reportingInstance": instance[:128],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class KubeWriter:
    """Thin, counted wrapper over the kubernetes client for GenerationJobs and their Events."""

    def __init__(
        self, api_client: k8s.ApiClient, metrics: OperatorMetrics, identity: str = "genjob-operator"
    ):
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.metrics = metrics
        self.identity = identity
        self._lock = threading.Lock()
        self.writes: dict[str, int] = {}

    def _count(self, kind: str) -> None:
        self.metrics.api_writes.labels(kind=kind).inc()
        with self._lock:
            self.writes[kind] = self.writes.get(kind, 0) + 1

    # -- reads ------------------------------------------------------------------------------

    def list_jobs(self, namespaces: Iterable[str]) -> list[JobView]:
        names = list(namespaces)
        items: list[dict[str, Any]] = []
        if not names:
            items = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        for ns in names:
            items += self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
        return [JobView.from_body(i) for i in items]

    def pod_and_node(self, namespace: str, name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """A worker pod and the node it runs on, as plain dicts (two GETs; for cold jobs only)."""
        client = self.core.api_client
        pod = client.sanitize_for_serialization(self.core.read_namespaced_pod(name, namespace))
        node_name = (pod.get("spec") or {}).get("nodeName")
        node = client.sanitize_for_serialization(self.core.read_node(node_name)) if node_name else None
        return pod, node

    def namespace_labels(self, name: str) -> dict[str, str]:
        try:
            ns = self.core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return {}
            raise
        return dict(ns.metadata.labels or {})

    # -- writes -----------------------------------------------------------------------------

    def _patch(self, view: JobView, body: Any, content_type: str, status: bool = False) -> dict[str, Any]:
        call = (
            self.custom.patch_namespaced_custom_object_status
            if status
            else self.custom.patch_namespaced_custom_object
        )
        try:
            reply: dict[str, Any] = call(
                GROUP, VERSION, view.namespace, PLURAL, view.name, body, _content_type=content_type
            )
            return reply
        except ApiException as exc:
            if exc.status == 404:
                raise ObjectGone(f"{view.namespace}/{view.name}") from exc
            if exc.status == 422 and content_type == JSON_PATCH and "test" in (exc.body or ""):
                raise ObjectGone(f"{view.namespace}/{view.name} changed identity or finalizers") from exc
            raise

    def add_finalizer(self, view: JobView) -> JobView:
        if FINALIZER in view.finalizers:
            return view
        self._count("finalizer_add")
        return JobView.from_body(self._patch(view, add_finalizer_ops(view), JSON_PATCH))

    def remove_finalizer(self, view: JobView) -> JobView | None:
        ops = remove_finalizer_ops(view)
        if ops is None:
            return view
        self._count("finalizer_remove")
        body = self._patch(view, ops, JSON_PATCH)
        return JobView.from_body(body) if body else None

    def patch_status(self, view: JobView, status: dict[str, Any]) -> JobView:
        """Merge-patch the status subresource (null values delete fields)."""
        self._count("status")
        return JobView.from_body(self._patch(view, {"status": status}, MERGE_PATCH, status=True))

    def delete_job(self, view: JobView) -> None:
        self._count("delete")
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP,
                VERSION,
                view.namespace,
                PLURAL,
                view.name,
                body=k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=view.uid)),
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def post_event(
        self, namespace: str, name: str, uid: str, reason: str, message: str, warning: bool
    ) -> None:
        self._count("event")
        self.core.create_namespaced_event(
            namespace, event_body(namespace, name, uid, reason, message, warning, self.identity)
        )


class TenantResolver:
    """The tenant of a job's namespace (labels cached `ttl_seconds`) and of the job itself
    (quota.py: spec.owner may only name it, unless the namespace may act for other tenants)."""

    def __init__(self, kube: KubeWriter, settings: GenjobSettings, ttl_seconds: float = 30.0) -> None:
        self.kube = kube
        self.label = settings.operator.tenant_label
        self.namespace_template = settings.api.namespace_template
        self.owner_namespaces = settings.operator.owner_namespaces
        self.ttl = ttl_seconds
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def labels(self, namespace: str) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(namespace)
        if hit and now - hit[0] < self.ttl:
            return hit[1]
        labels = self.kube.namespace_labels(namespace)
        with self._lock:
            self._cache[namespace] = (now, labels)
        return labels

    def namespace_tenant(self, namespace: str) -> str:
        return namespace_tenant(namespace, self.labels(namespace), self.label, self.namespace_template)

    def tenant(self, view: JobView) -> str:
        """The job's tenant; OwnerNotAllowedError when its spec.owner claims another one."""
        return job_tenant(
            view.spec, view.namespace, self.namespace_tenant(view.namespace), self.owner_namespaces
        )


class EventPoster:
    """Posts Kubernetes Events from a background thread, so status work never waits on them.
    Events are best effort: a failed post is logged and dropped."""

    def __init__(self, kube: KubeWriter, logger: Any, max_queued: int = 10_000) -> None:
        import queue

        self.kube = kube
        self.log = logger
        self._queue: queue.Queue[tuple[str, str, str, str, str, bool] | None] = queue.Queue(max_queued)
        self._thread = threading.Thread(target=self._run, name="event-poster", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def post(
        self, namespace: str, name: str, uid: str, reason: str, message: str, warning: bool = False
    ) -> None:
        try:
            self._queue.put_nowait((namespace, name, uid, reason, message, warning))
        except Exception:  # queue full: drop, Events are best effort
            self.log.warning("event queue full; dropping event", reason=reason, name=name)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until queued events are posted (tests)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                try:
                    self.kube.post_event(*item)
                except Exception as exc:
                    self.log.warning("posting a Kubernetes Event failed", error=str(exc), reason=item[3])
            finally:
                self._queue.task_done()
