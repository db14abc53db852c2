"""Real worker processes, in-process workers and job helpers, for tests and benchmarks.

`WorkerProcess` starts `python -m genjob.cli worker` with settings passed the way a pod
gets them (GENJOB_* environment variables), waits for /readyz, and stops it with a signal.
`enqueue_job` admits nothing: it queues a spec for the tiny model directly, like the
operator does after admission. Not product code (tests/support/__init__.py).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import httpx

from genjob.admission import new_job
from genjob.connect import job_queue
from genjob.jobspec import GenerationJobSpec
from genjob.queue import JobQueue, JobRecord, JobState
from genjob.result_store import build_result_store
from genjob.settings import GenjobSettings
from genjob_worker.drain import DrainController
from genjob_worker.generate import GenerationOutput
from genjob_worker.http import WorkerHealth
from genjob_worker.main import build_loop
from genjob_worker.memory import CircuitBreaker
from genjob_worker.metrics import WorkerMetrics
from genjob_worker.models import ModelRegistry
from genjob_worker.pod_marker import PodMarker
from genjob_worker.runtime import DiffusersGenerator, Generator
from tests.support.processes import GenjobProcess

# Intra-op threads of torch in test and benchmark processes. With torch's default (one per
# core) several busy processes on a small shared machine oversubscribe the cores, and
# OpenMP's barriers then make a 60-step tiny job take anywhere from 0.4 s to 40 s; with one
# thread per process it takes ~0.4 s every time.
TEST_TORCH_THREADS = 1


def worker_environment(
    *,
    redis_url: str,
    model_dir: Path,
    results_dir: Path,
    http_port: int,
    queue: Mapping[str, Any] | None = None,
    torch_threads: int | None = TEST_TORCH_THREADS,
    **worker: Any,
) -> dict[str, str]:
    """GENJOB_* variables for a worker serving the tiny model as `tiny` (the default model).

    `torch_threads` sets OMP_NUM_THREADS/MKL_NUM_THREADS (None keeps torch's default): see
    TEST_TORCH_THREADS.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENJOB_")}
    if torch_threads is not None:
        env.update(OMP_NUM_THREADS=str(torch_threads), MKL_NUM_THREADS=str(torch_threads))
    models = {"tiny": {"source": str(model_dir), "kind": "sd", "dtype": "float32", "memory_class": "tiny"}}
    env.update(
        GENJOB_REDIS__URL=redis_url,
        GENJOB_MODELS=json.dumps(models),
        GENJOB_DEFAULT_MODEL="tiny",
        GENJOB_RESULTS__PATH=str(results_dir),
        GENJOB_WORKER__HTTP_PORT=str(http_port),
        GENJOB_LOG_FORMAT="console",
    )
    for name, value in (queue or {}).items():
        env[f"GENJOB_QUEUE__{name.upper()}"] = json.dumps(value) if not isinstance(value, str) else value
    for name, value in worker.items():
        env[f"GENJOB_WORKER__{name.upper()}"] = json.dumps(value) if not isinstance(value, str) else value
    return env


class WorkerProcess(GenjobProcess):
    """One `genjob worker` child process, ready when its /readyz answers 200."""

    def __init__(self, env: Mapping[str, str], log_path: Path, args: Collection[str] = ()) -> None:
        super().__init__(["worker", *args], env, log_path)
        self.port = int(self.env["GENJOB_WORKER__HTTP_PORT"])

    def start(self) -> WorkerProcess:
        super().start()
        return self

    def get(self, path: str) -> tuple[int, str]:
        """Status and body of GET http://127.0.0.1:port/path (0 when nothing answers)."""
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except httpx.HTTPError:
            return 0, ""
        return response.status_code, response.text

    def wait_ready(self, timeout: float = 120.0) -> None:
        self.wait_http(f"http://127.0.0.1:{self.port}/readyz", timeout)


StartWorker = Callable[..., WorkerProcess]  # the tests' start_worker fixture


def enqueue_job(
    queue: JobQueue, job_id: str, *, meta: dict[str, Any] | None = None, **fields: Any
) -> GenerationJobSpec:
    """Queue a tiny-model job (64x64, 2 steps unless overridden); returns its spec."""
    spec_fields: dict[str, Any] = {"tier": "free", "model": "tiny", "prompt": "a red bicycle"}
    spec_fields.update({"width": 64, "height": 64, "steps": 2, **fields})
    spec = GenerationJobSpec(**spec_fields)
    queue.enqueue(new_job(job_id, spec, meta))
    return spec


def wait_for_job(
    queue: JobQueue,
    job_id: str,
    states: Collection[JobState] = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED),
    timeout: float = 120.0,
    *,
    min_progress: int | None = None,
) -> JobRecord:
    """Poll the job until it is in one of `states` (and, if given, has reached `min_progress`)."""
    deadline = time.monotonic() + timeout
    record = None
    while time.monotonic() < deadline:
        record = queue.get(job_id)
        reached = min_progress is None or (record is not None and (record.progress_step or 0) >= min_progress)
        if record is not None and record.state in states and reached:
            return record
        time.sleep(0.02)
    raise TimeoutError(f"job {job_id} not in {sorted(states)} within {timeout}s; last record: {record}")


class InProcessWorker:
    """A worker loop in this process (no signals, no HTTP), over a given model registry.

    `generator` replaces the diffusers runtime (a seam for injected failures); `run` replaces
    the pipeline call inside the runtime's OOM protection; `pod_marker` defaults to none.
    """

    def __init__(
        self,
        settings: GenjobSettings,
        registry: ModelRegistry,
        *,
        name: str = "worker-test",
        generator: Generator | None = None,
        run: Callable[..., GenerationOutput] | None = None,
        pod_marker: PodMarker | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.queue = job_queue(settings)
        self.store = build_result_store(settings.results)
        self.drain = DrainController(settings.worker.drain_grace_seconds)
        self.breaker = CircuitBreaker(settings.worker.max_consecutive_failures)
        self.metrics = WorkerMetrics()
        self.health = WorkerHealth(self.drain, self.breaker)
        self.health.model_loaded.set()
        self.generator = generator or DiffusersGenerator(registry, self.store, settings.worker, run=run)
        self.loop = build_loop(
            settings,
            queue=self.queue,
            generator=self.generator,
            store=self.store,
            worker=name,
            drain=self.drain,
            breaker=self.breaker,
            metrics=self.metrics,
            pod_marker=pod_marker,
        )
        self._thread: threading.Thread | None = None

    def start(self) -> InProcessWorker:
        """Run the loop in a thread until `stop()`."""
        self._thread = threading.Thread(target=self.loop.run, name="worker-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self.drain.request()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError("the worker loop did not stop")

    def count(self, outcome: str, tier: str = "free", model: str = "tiny") -> float:
        """Jobs of the tier and model that ended with `outcome`, whatever their reason."""
        wanted = {"tier": tier, "model": model, "outcome": outcome}
        return sum(
            sample.value
            for family in self.metrics.registry.collect()
            for sample in family.samples
            if sample.name == "genjob_worker_jobs_total" and wanted.items() <= sample.labels.items()
        )
