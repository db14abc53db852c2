"""Wires the operator together: clients, the cache, and the background loops of the leader."""

from __future__ import annotations

import threading
from typing import Any

import structlog
from kubernetes import client as k8s

from genjob.connect import job_queue, redis_client, redis_keys
from genjob.settings import GenjobSettings
from genjob_operator.admission_flow import Admitter
from genjob_operator.cache import JobCache, JobView
from genjob_operator.kube import EventPoster, KubeWriter, TenantResolver
from genjob_operator.metrics import OperatorMetrics
from genjob_operator.reaper import Reaper
from genjob_operator.status_sync import StatusSync
from genjob_operator.tier_activity import TierActivity
from genjob_operator.ttl import TtlCleaner

log = structlog.get_logger("genjob.operator")


class OperatorRuntime:
    """Everything the leader runs besides kopf's watch: admission, status, reaper, TTL."""

    def __init__(
        self,
        settings: GenjobSettings,
        api_client: k8s.ApiClient,
        metrics: OperatorMetrics,
        namespaces: list[str],
        identity: str,
    ) -> None:
        op = settings.operator
        self.settings = settings
        self.namespaces = namespaces
        self.metrics = metrics
        self.redis = redis_client(settings)
        self.queue = job_queue(settings, self.redis)
        self.cache = JobCache()
        self.kube = KubeWriter(api_client, metrics, identity)
        self.events = EventPoster(self.kube, log)
        self.tenants = TenantResolver(self.kube, settings)
        self.activity = TierActivity(settings.tiers)  # what KEDA's push trigger streams (push_scaler.py)
        self.admitter = Admitter(
            self.cache,
            self.kube,
            self.queue,
            settings,
            self.tenants,
            self.events,
            metrics,
            on_enqueued=self.activity.note_work,
        )
        self.status = StatusSync(
            self.redis,
            redis_keys(settings),
            self.cache,
            self.kube,
            self.events,
            metrics,
            op.progress_mirror_seconds,
            on_final=self.admitter.wake,
            on_lost=self.admitter.report_lost,
            queue=self.queue,
            read_pod_and_node=self.kube.pod_and_node,
            resync_seconds=op.resync_seconds,
        )
        self.reaper = Reaper(
            self.queue, self.cache, metrics, op.reaper_interval_seconds, namespaces, activity=self.activity
        )
        self.ttl = TtlCleaner(self.cache, self.kube, metrics, op.ttl_seconds_after_finished)
        self.stop_flag = threading.Event()
        self.threads: dict[str, threading.Thread] = {}

    def seed(self) -> None:
        """The full LIST the level-based loops start from (kopf's watch keeps it fresh)."""
        listed_from = self.cache.begin_list()
        views = self.kube.list_jobs(self.namespaces)
        self.cache.replace_all(views, listed_from)
        log.info("job cache seeded", jobs=len(views))

    def start(self) -> None:
        self.seed()
        self.events.start()
        for name, target in (
            ("admission", self.admitter.run),
            ("status", self.status.run),
            ("reaper", self.reaper.run),
            ("ttl", self.ttl.run),
        ):
            thread = threading.Thread(target=target, args=(self.stop_flag,), name=name, daemon=True)
            thread.start()
            self.threads[name] = thread

    def stop(self) -> None:
        self.stop_flag.set()
        self.activity.close()
        self.admitter.wake()
        for thread in self.threads.values():
            thread.join(timeout=5)
        self.events.stop()
        self.redis.close()

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Called by kopf for every watch event of a GenerationJob (and the initial listing)."""
        view = JobView.from_body(body)
        if event_type == "DELETED":
            self.cache.forget(view.uid)
            self.admitter.wake()
            return
        old = self.cache.get(view.uid)
        if not self.cache.observe(view):
            # Held back behind our own write: look again once the cache has let it through.
            timer = threading.Timer(self.cache.catch_up_seconds + 0.1, self.admitter.wake)
            timer.daemon = True
            timer.start()
            return
        if (
            view.deleting
            or view.waiting_for_admission
            or (old is not None and view.is_final and not old.is_final)
            or (old is not None and old.finalizers != view.finalizers)
        ):
            self.admitter.wake()
