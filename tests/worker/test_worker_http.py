"""The probes and metrics endpoint over real HTTP (in-process server on a free port)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from genjob_worker.drain import DrainController
from genjob_worker.http import HealthServer, WorkerHealth
from genjob_worker.memory import CircuitBreaker
from genjob_worker.metrics import WorkerMetrics


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_readiness_follows_model_breaker_and_drain() -> None:
    """Ensures /readyz is 503 until the model is loaded, then 200, and 503 again when the breaker
    opens or the worker drains; /healthz fails only with the breaker open."""
    drain, breaker, metrics = DrainController(10), CircuitBreaker(1), WorkerMetrics()
    health = WorkerHealth(drain, breaker)
    server = HealthServer(0, health, metrics, host="127.0.0.1").start()
    try:
        status, body = get(server.port, "/readyz")
        assert status == 503 and "not loaded" in json.loads(body)["reasons"][0]
        assert get(server.port, "/healthz")[0] == 200
        health.model_loaded.set()
        assert get(server.port, "/readyz") == (200, json.dumps({"ready": True, "reasons": []}))
        breaker.record_failure()
        assert get(server.port, "/readyz")[0] == 503 and get(server.port, "/healthz")[0] == 503
        breaker.record_success()
        drain.request()
        assert get(server.port, "/readyz")[0] == 503 and get(server.port, "/healthz")[0] == 200
        assert get(server.port, "/nope")[0] == 404
    finally:
        server.stop()


def test_metrics_exposition() -> None:
    """Ensures /metrics serves the worker's metrics in the Prometheus text format (no GPU gauges on CPU)."""
    metrics = WorkerMetrics()
    metrics.jobs.labels("pro", "tiny", "succeeded", "").inc()
    metrics.job_wait_seconds.labels("pro", "true").observe(0.5)
    metrics.model_load_seconds.labels("tiny").observe(2.0)
    server = HealthServer(0, WorkerHealth(DrainController(1), CircuitBreaker(1)), metrics, host="127.0.0.1")
    server.start()
    try:
        status, text = get(server.port, "/metrics")
    finally:
        server.stop()
    assert status == 200
    assert 'genjob_worker_jobs_total{model="tiny",outcome="succeeded",reason="",tier="pro"} 1.0' in text
    assert 'genjob_job_wait_seconds_bucket{cold="true",le="0.5",tier="pro"} 1.0' in text
    assert 'genjob_worker_model_load_seconds_count{model="tiny"} 1.0' in text
    assert "genjob_worker_generation_seconds" in text and "genjob_worker_jobs_in_progress" in text
    assert "genjob_worker_consecutive_failures" in text and "gpu_memory" not in text
