"""`genjob operator`: leader election, then kopf in-process with the runtime's loops."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from typing import Any

import structlog

from genjob.logs import configure_logging
from genjob.settings import GenjobSettings
from genjob_operator.health import HealthServer, loops_alive
from genjob_operator.metrics import OperatorMetrics
from genjob_operator.push_scaler import push_server_from_settings

log = structlog.get_logger("genjob.operator")


def api_client() -> Any:
    from kubernetes import client as k8s
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = k8s.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = 32
    return k8s.ApiClient(configuration)


def run_operator(
    settings: GenjobSettings,
    namespaces: list[str],
    leader_election: bool = True,
    lease_namespace: str | None = None,
    identity: str | None = None,
    lease_seconds: int = 15,
) -> int:
    configure_logging(settings, "operator")
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per handled event is noise
    import kopf
    from kubernetes import client as k8s

    import genjob_operator.handlers  # noqa: F401  (registers the kopf handlers)
    from genjob_operator.leader import LeaseElector
    from genjob_operator.runtime import OperatorRuntime

    identity = identity or f"{socket.gethostname()}-{os.getpid()}"
    metrics = OperatorMetrics()
    client = api_client()
    runtime_box: dict[str, OperatorRuntime] = {}

    def live() -> tuple[bool, str]:
        runtime = runtime_box.get("runtime")
        if runtime is None:
            return True, "standby"
        return loops_alive(runtime.threads, metrics, max_age=120)

    health = HealthServer(settings.operator.http_port, metrics, live)
    if settings.operator.http_port:
        health.start()
    # KEDA's push trigger: served from the start, as a standby until this replica leads.
    push = push_server_from_settings(settings)
    if push is not None:
        push.start()

    stop = threading.Event()
    elector = None
    if leader_election:
        elector = LeaseElector(
            k8s.CoordinationV1Api(client),
            lease_namespace or os.environ.get("POD_NAMESPACE") or "default",
            settings.operator.peering_name,
            identity,
            lease_seconds=lease_seconds,
            renew_seconds=max(1.0, lease_seconds / 3),
        )
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
        log.info("waiting for leadership", lease=settings.operator.peering_name, identity=identity)
        if not elector.wait_until_leader(stop):
            if push is not None:
                push.stop()
            return 0
        for s, handler in previous.items():
            signal.signal(s, handler)

        def lost() -> None:
            log.error("lost the lease; exiting so that only one replica acts")
            os._exit(3)

        elector.keep_renewing(stop, lost)
    metrics.is_leader.set(1)

    def make_runtime() -> OperatorRuntime:
        runtime = OperatorRuntime(settings, client, metrics, namespaces, identity)
        runtime_box["runtime"] = runtime
        if push is not None:
            push.lead(runtime.activity)
        return runtime

    log.info("leading; starting kopf", namespaces=namespaces or "all", identity=identity)
    try:
        asyncio.run(
            kopf.operator(
                clusterwide=not namespaces,
                namespaces=namespaces,
                standalone=True,
                memo=kopf.Memo(make_runtime=make_runtime),
            )
        )
    finally:
        stop.set()
        if push is not None:
            push.stop()  # streams end cleanly before the Lease is released, so KEDA retries soon
        if elector is not None:
            elector.release()
        health.stop()
    return 0
