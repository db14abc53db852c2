"""Cluster mode: the gateway creates GenerationJob objects in the tenant's namespace and reads
their status; the operator does admission quota, enqueueing and status updates.

The object name is the job id; labels carry the tenant and the API key id, so a tenant's
jobs are listed with a label selector. A webhook's URL, key and tenant are recorded in Redis
at submit (`WebhookTargets`), not taken from the object: whoever may edit GenerationJobs in a
namespace could label one with another tenant's key and get webhooks signed with its secret.
Cancelling deletes the object (the operator's finalizer removes the job from the queue or
interrupts it); until the finalizer is done the object is still readable with status
`cancelled` requested.
"""

from __future__ import annotations

import json
import os
from typing import Any

import structlog
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from genjob.crd import GROUP, PLURAL, VERSION
from genjob.jobspec import ColdStart, GenerationJobSpec, Phase
from genjob.keys import RedisKeys
from genjob.queue import JobEvent, JobQueue
from genjob.settings import GenjobSettings
from genjob_api.auth import Caller
from genjob_api.backends import WaitEstimator, image_views
from genjob_api.backends.cluster_stream import ClusterStream
from genjob_api.errors import ApiError
from genjob_api.models import Generation, GenerationPage, ProgressOut, Status
from genjob_api.ratelimit import RateCounter, RateDecision, RateLimitedError, RateLimiter
from genjob_api.webhook_delivery import WebhookTarget

log = structlog.get_logger("genjob.api.backends")

TENANT_LABEL = "genjob.io/tenant"
KEY_LABEL = "genjob.io/api-key"
WEBHOOK_ANNOTATION = "genjob.io/webhook-url"

_STATUS = {
    Phase.PENDING: Status.PENDING,
    Phase.QUEUED: Status.QUEUED,
    Phase.RUNNING: Status.RUNNING,
    Phase.SUCCEEDED: Status.SUCCEEDED,
    Phase.FAILED: Status.FAILED,
    Phase.CANCELLED: Status.CANCELLED,
}


def _api_message(exc: Any) -> str:
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(exc.reason)


def load_api_client(kubeconfig: str | None = None) -> Any:
    """In-cluster config in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    from kubernetes import client, config

    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(config_file=kubeconfig)


class WebhookTargets:
    """The webhook each gateway-created job asked for, by namespace and name, in Redis (kept as
    long as finished job records)."""

    def __init__(self, client: Any, keys: RedisKeys, retention_seconds: int) -> None:
        self.client, self.keys, self.retention_seconds = client, keys, retention_seconds

    def record(self, namespace: str, name: str, url: str, caller: Caller) -> None:
        key = self.keys.webhook_target(namespace, name)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"url": url, "key_id": caller.key_id, "tenant": caller.tenant})
            pipe.expire(key, self.retention_seconds)
            pipe.execute()

    def read(self, namespace: str, name: str) -> WebhookTarget | None:
        found = self.client.hgetall(self.keys.webhook_target(namespace, name))
        if not found:
            return None
        return WebhookTarget(name, found["url"], found["key_id"], found["tenant"])


class ClusterBackend:
    def __init__(
        self,
        api_client: Any,
        settings: GenjobSettings,
        estimator: WaitEstimator,
        limiter: RateLimiter,
        queue: JobQueue,
    ) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        self.discovery = client.ApisApi(api_client)
        self.exceptions = client.exceptions
        self.namespace_template = settings.api.namespace_template
        self.estimator = estimator
        self.limiter = limiter
        self.queue = queue
        self.webhooks = WebhookTargets(queue.client, queue.keys, settings.queue.finished_retention_seconds)

    def namespace(self, tenant: str) -> str:
        return self.namespace_template.format(tenant=tenant)

    def _body(
        self, job_id: str, spec: GenerationJobSpec, caller: Caller, meta: dict[str, Any]
    ) -> dict[str, Any]:
        annotations = {WEBHOOK_ANNOTATION: meta["webhook"]} if meta.get("webhook") else {}
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "GenerationJob",
            "metadata": {
                "name": job_id,
                "labels": {TENANT_LABEL: caller.tenant, KEY_LABEL: caller.key_id},
                "annotations": annotations,
            },
            "spec": spec.to_wire(),
        }

    async def submit(
        self,
        job_id: str,
        spec: GenerationJobSpec,
        caller: Caller,
        meta: dict[str, Any],
        rate: RateCounter | None,
    ) -> tuple[Generation, RateDecision | None]:
        decision = await self.limiter.count(rate) if rate else None
        if decision and not decision.allowed:
            raise RateLimitedError(decision)
        return await run_in_threadpool(self.submit_sync, job_id, spec, caller, meta), decision

    def submit_sync(
        self, job_id: str, spec: GenerationJobSpec, caller: Caller, meta: dict[str, Any]
    ) -> Generation:
        namespace = self.namespace(caller.tenant)
        if meta.get("webhook"):  # before the object: its final event may come at any time after
            self.webhooks.record(namespace, job_id, str(meta["webhook"]), caller)
        try:
            obj = self.api.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, self._body(job_id, spec, caller, meta)
            )
        except self.exceptions.ApiException as exc:
            if exc.status == 404:
                raise ApiError(
                    403,
                    "tenant_not_provisioned",
                    f"namespace {namespace} of tenant {caller.tenant!r} does not exist; "
                    "ask an admin to create it",
                ) from None
            if exc.status == 422:  # the API server's schema or CEL rules refused it
                raise ApiError(422, "invalid_parameters", _api_message(exc)) from None
            if exc.status != 409:  # 409: created before (an idempotent replay)
                raise
            obj = self._read(namespace, job_id)
        return self._with_queue_position(self._view(obj), obj)

    def _read(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
            return obj
        except self.exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _owned(self, job_id: str, caller: Caller) -> dict[str, Any] | None:
        obj = self._read(self.namespace(caller.tenant), job_id)
        if obj is None or obj["metadata"].get("labels", {}).get(TENANT_LABEL) != caller.tenant:
            return None
        return obj

    def _view(self, obj: dict[str, Any]) -> Generation:
        meta, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status") or {}
        phase = Phase(status["phase"]) if status.get("phase") else Phase.PENDING
        state = _STATUS[phase]
        if meta.get("deletionTimestamp") and not state.is_final:
            state = Status.CANCELLED if phase in (Phase.PENDING, Phase.QUEUED) else state
        result = status.get("result")
        images, uris = image_views(meta["name"], result) if state == Status.SUCCEEDED else ([], [])
        progress = status.get("progress")
        view = Generation(
            id=meta["name"],
            status=state,
            tier=spec.get("tier", ""),
            model=status.get("model") or spec.get("model"),
            created_at=meta.get("creationTimestamp"),
            started_at=status.get("startedAt"),
            finished_at=status.get("finishedAt"),
            progress=ProgressOut(step=progress.get("step", 0), total=progress.get("total", 0))
            if progress
            else None,
            attempts=status.get("attempts") or 0,
            reason=status.get("reason"),
            message=status.get("message"),
            seed=(result or {}).get("seed", spec.get("seed")),
            queue_seconds=status.get("queueSeconds"),
            cold_start=_cold_start(status.get("coldStart")),
            resumed_from_step=status.get("resumedFromStep"),
            steps_saved=status.get("stepsSaved") or 0,
            images=images,
            spec=spec,
        )
        view.set_store_uris(uris)
        return view

    def _with_queue_position(self, view: Generation, obj: dict[str, Any] | None) -> Generation:
        """Queue position and estimated wait from Redis, like local mode: a queued job's place in
        its tier's list (the operator queues it by the object's uid); a pending one (not admitted
        yet) will land at the end of the list."""
        if obj is None or view.status not in (Status.PENDING, Status.QUEUED):
            return view
        place = self.queue.place_in_line(obj["metadata"]["uid"], view.tier)
        position = place.position if view.status == Status.QUEUED else place.pending
        if position is None:
            return view
        return view.model_copy(
            update={
                "queue_position": position,
                "estimated_wait_seconds": self.estimator.estimate(position, place.workers),
            }
        )

    def get(self, job_id: str, caller: Caller) -> Generation | None:
        obj = self._owned(job_id, caller)
        return None if obj is None else self._with_queue_position(self._view(obj), obj)

    def stream_reader(self, job_id: str, caller: Caller) -> ClusterStream:
        def read_object() -> tuple[Generation, str] | None:
            obj = self._owned(job_id, caller)
            return None if obj is None else (self._view(obj), str(obj["metadata"]["uid"]))

        return ClusterStream(job_id, read_object, self.queue, self.estimator)

    def cancel(self, job_id: str, caller: Caller) -> tuple[str, Generation | None] | None:
        obj = self._owned(job_id, caller)
        if obj is None:
            return None
        view = self._view(obj)
        if view.status.is_final:
            return "already_final", view
        try:
            self.api.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace(caller.tenant), PLURAL, job_id
            )
        except self.exceptions.ApiException as exc:
            if exc.status != 404:
                raise
        after = self.get(job_id, caller)
        return "cancel_requested", after or view.model_copy(update={"status": Status.CANCELLED})

    def list(self, caller: Caller, status: Status | None, limit: int, cursor: str | None) -> GenerationPage:
        kwargs: dict[str, Any] = {"label_selector": f"{TENANT_LABEL}={caller.tenant}", "limit": limit}
        if cursor:
            kwargs["_continue"] = cursor
        try:
            reply = self.api.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace(caller.tenant), PLURAL, **kwargs
            )
        except self.exceptions.ApiException as exc:
            if exc.status in (404, 410):
                return GenerationPage(items=[], next_cursor=None)
            raise
        # Newest first across pages: the API server lists by name, and gateway ids sort newest
        # first (routes/generations.py new_job_id).
        items = [self._view(o) for o in reply.get("items", [])]
        if status is not None:
            items = [g for g in items if g.status == status]
        return GenerationPage(items=items, next_cursor=reply.get("metadata", {}).get("continue") or None)

    def webhook_target(self, event: JobEvent) -> WebhookTarget | None:
        """The operator's queue metadata names the object; the gateway recorded its webhook (URL,
        creating key, tenant) at submit. Objects the gateway did not create have none."""
        namespace, name = event.meta.get("namespace"), event.meta.get("name")
        if not namespace or not name:
            return None
        target = self.webhooks.read(str(namespace), str(name))
        if target is None or namespace != self.namespace(target.tenant):
            return None
        return target

    def not_ready_reason(self) -> str | None:
        try:
            self.discovery.get_api_versions(_request_timeout=5)
        except Exception as exc:  # the text goes to the log: /readyz is unauthenticated
            log.warning("kubernetes API unreachable", error=str(exc))
            return f"kubernetes API unreachable ({type(exc).__name__})"
        return None


def _cold_start(raw: Any) -> ColdStart | None:
    """status.coldStart as the API shows it (None when absent or not what this version knows)."""
    try:
        return ColdStart.model_validate(raw) if raw else None
    except ValidationError:
        return None
