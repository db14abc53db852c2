"""Wire a worker process: settings -> Redis -> JobQueue -> models -> result store -> loop.

Order matters for the probes: the HTTP server starts first (liveness answers while the
models load), the default model and `preload_models` load next, and only then is the
worker ready and does it claim. Signal handlers are installed before the models load, so a
SIGTERM during start-up exits cleanly without claiming anything.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

from genjob.connect import job_queue, redis_client
from genjob.logs import configure_logging
from genjob.queue import JobQueue, WorkerStart
from genjob.result_store import ResultStore, build_result_store
from genjob.settings import GenjobSettings
from genjob.tiers import consumption_order
from genjob_worker.checkpointer import Checkpointer
from genjob_worker.drain import DrainController
from genjob_worker.http import HealthServer, WorkerHealth
from genjob_worker.loop import WorkerLoop
from genjob_worker.memory import CircuitBreaker
from genjob_worker.metrics import WorkerMetrics
from genjob_worker.outcomes import JobOutcomes
from genjob_worker.pod_marker import PodMarker, pod_marker_from_environment
from genjob_worker.runtime import Generator

log = structlog.get_logger()

EXIT_OK = 0
EXIT_MODEL_LOAD_FAILED = 3


def worker_name(settings: GenjobSettings, environ: Mapping[str, str]) -> str:
    """The configured name, else the pod name (downward API), else host-pid."""
    return settings.worker.name or environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def build_loop(
    settings: GenjobSettings,
    *,
    queue: JobQueue,
    generator: Generator,
    store: ResultStore,
    worker: str,
    drain: DrainController,
    breaker: CircuitBreaker,
    metrics: WorkerMetrics,
    pod_marker: PodMarker | None = None,
    release_memory: Callable[[], None] | None = None,
    start: WorkerStart | None = None,
) -> WorkerLoop:
    """The loop of a worker with these settings (also used by tests to run one in-process)."""
    ws = settings.worker
    return WorkerLoop(
        queue=queue,
        generator=generator,
        outcomes=JobOutcomes(queue, store, metrics, breaker, Checkpointer(store, ws)),
        worker_name=worker,
        tiers=consumption_order(settings.tiers, ws.tiers, ws.spill_over),
        settings=ws,
        default_model=settings.default_model,
        known_models=list(settings.models),
        drain=drain,
        breaker=breaker,
        metrics=metrics,
        pod_marker=pod_marker,
        release_memory=release_memory or (lambda: None),
        start=start,
    )


def process_started_at_ms() -> int:
    """When this process started (wall clock, ms): /proc on Linux, else now."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime: clock ticks after boot
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return int((boot + ticks / os.sysconf("SC_CLK_TCK")) * 1000)
    except (OSError, ValueError, IndexError, StopIteration):
        return int(time.time() * 1000)


def pod_reference(environ: Mapping[str, str]) -> str:
    """namespace/name of this worker's pod (downward API), or "" outside Kubernetes."""
    name, namespace = environ.get("POD_NAME", ""), environ.get("POD_NAMESPACE", "")
    return f"{namespace}/{name}" if name and namespace else ""


def run_worker(
    settings: GenjobSettings, *, once: bool = False, environ: Mapping[str, str] = os.environ
) -> int:
    """Run the worker until SIGTERM (or one claim with `once`); the process exit code."""
    configure_logging(settings, "worker")
    from genjob_worker.memory import free_memory
    from genjob_worker.models import ModelNotFoundError, ModelRegistry
    from genjob_worker.runtime import DiffusersGenerator

    started_at_ms = process_started_at_ms()
    ws = settings.worker
    name = worker_name(settings, environ)
    structlog.contextvars.bind_contextvars(worker=name)
    drain = DrainController(ws.drain_grace_seconds)
    drain.install_signal_handlers()
    registry = ModelRegistry.from_settings(settings, environ)
    on_cuda = registry.device.startswith("cuda")
    metrics = WorkerMetrics(cuda_device=registry.device if on_cuda else None)
    breaker = CircuitBreaker(ws.max_consecutive_failures)
    health = WorkerHealth(drain, breaker)
    server = HealthServer(ws.http_port, health, metrics).start() if ws.http_port else None
    registry.on_load = lambda model, seconds: metrics.model_load_seconds.labels(model).observe(seconds)
    try:
        load_began = time.monotonic()
        for model in dict.fromkeys([settings.default_model, *ws.preload_models]):
            if drain.draining:
                return EXIT_OK
            try:
                registry.get(model)
            except ModelNotFoundError as exc:
                log.error("cannot load a model at start", model=model, error=str(exc))
                return EXIT_MODEL_LOAD_FAILED
            except Exception:
                log.exception("cannot load a model at start", model=model)
                return EXIT_MODEL_LOAD_FAILED
        health.model_loaded.set()
        start = WorkerStart(
            process_started_at_ms=started_at_ms,
            ready_at_ms=int(time.time() * 1000),
            model_load_seconds=time.monotonic() - load_began,
            pod=pod_reference(environ),
        )
        log.info(
            "worker ready",
            device=registry.device,
            models=registry.loaded(),
            model_load_seconds=round(start.model_load_seconds, 3),
            since_process_start_seconds=round((start.ready_at_ms - started_at_ms) / 1000, 3),
        )
        queue = job_queue(settings, redis_client(settings))
        store = build_result_store(settings.results)
        loop = build_loop(
            settings,
            queue=queue,
            generator=DiffusersGenerator(registry, store, ws),
            store=store,
            worker=name,
            drain=drain,
            breaker=breaker,
            metrics=metrics,
            pod_marker=pod_marker_from_environment(ws.annotate_pod, environ),
            release_memory=free_memory if on_cuda else None,
            start=start,
        )
        loop.run(once=once)
        return EXIT_OK
    finally:
        if server is not None:
            server.stop()
