"""Prometheus metrics of one worker process, in their own registry (served on /metrics).

Each `WorkerMetrics` owns a `CollectorRegistry`, so tests can build several in one process.
GPU memory gauges exist only when the worker runs on CUDA.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

GENERATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)
MODEL_LOAD_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


class WorkerMetrics:
    """The worker's counters, histograms and gauges."""

    def __init__(self, *, cuda_device: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs = Counter(
            "genjob_worker_jobs",
            "Jobs finished by this worker, by tier, model, outcome and reason (the failure or "
            "requeue reason, e.g. OutOfMemory; empty for succeeded and lease_lost).",
            ["tier", "model", "outcome", "reason"],
            registry=r,
        )
        self.generation_seconds = Histogram(
            "genjob_worker_generation_seconds",
            "Pipeline time per job (a batched call's time is shared by image count).",
            ["model"],
            buckets=GENERATION_BUCKETS,
            registry=r,
        )
        self.job_wait_seconds = Histogram(
            "genjob_job_wait_seconds",
            'Time from enqueue to claim; cold="true" for the jobs of a worker\'s first claim (they '
            "waited for the pool to start).",
            ["tier", "cold"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.model_load_seconds = Histogram(
            "genjob_worker_model_load_seconds",
            "Time to load a model's pipeline (at start for the default model, later on first use).",
            ["model"],
            buckets=MODEL_LOAD_BUCKETS,
            registry=r,
        )
        self.resume_saved_seconds = Counter(
            "genjob_worker_resume_saved_seconds",
            "Estimated pipeline (GPU) seconds not spent again because a job resumed from a "
            "checkpoint: steps resumed from x this run's seconds per step.",
            ["model"],
            registry=r,
        )
        self.checkpoints = Counter(
            "genjob_worker_checkpoints",
            "Denoising checkpoints by trigger (preempt, periodic) and outcome (written, failed, "
            "resumed, refused).",
            ["trigger", "outcome"],
            registry=r,
        )
        self.in_progress = Gauge("genjob_worker_jobs_in_progress", "Jobs held right now.", registry=r)
        self.consecutive_failures = Gauge(
            "genjob_worker_consecutive_failures", "Failures in a row (circuit breaker input).", registry=r
        )
        self.circuit_open = Gauge(
            "genjob_worker_circuit_open", "1 when the circuit breaker stopped claiming.", registry=r
        )
        self.ready = Gauge("genjob_worker_ready", "1 when /readyz answers ready.", registry=r)
        if cuda_device is not None:
            self._gpu_gauges(cuda_device)

    def _gpu_gauges(self, device: str) -> None:
        import torch

        allocated = Gauge(
            "genjob_worker_gpu_memory_allocated_bytes", "torch.cuda.memory_allocated", registry=self.registry
        )
        reserved = Gauge(
            "genjob_worker_gpu_memory_reserved_bytes", "torch.cuda.memory_reserved", registry=self.registry
        )
        free = Gauge(
            "genjob_worker_gpu_memory_free_bytes", "Free memory of the device", registry=self.registry
        )
        allocated.set_function(lambda: torch.cuda.memory_allocated(device))
        reserved.set_function(lambda: torch.cuda.memory_reserved(device))
        free.set_function(lambda: torch.cuda.mem_get_info(torch.device(device))[0])

    def exposition(self) -> bytes:
        """The text format served on /metrics."""
        return generate_latest(self.registry)
