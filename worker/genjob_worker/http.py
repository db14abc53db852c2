"""The worker's small HTTP server: /healthz, /readyz and Prometheus /metrics.

- /healthz: 200 while the process runs; 503 once the circuit breaker opened, so the
  liveness probe restarts a worker that keeps failing jobs.
- /readyz: 200 only when the default model is loaded, the breaker is closed and the worker
  is not draining; else 503 with the reasons.
- /metrics: the worker's registry in the Prometheus text format.
A stdlib `ThreadingHTTPServer` in a daemon thread; port 0 in settings disables it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from genjob_worker.drain import DrainController
from genjob_worker.memory import CircuitBreaker
from genjob_worker.metrics import WorkerMetrics


class WorkerHealth:
    """What the probes ask: is the worker alive, is it ready for work."""

    def __init__(self, drain: DrainController, breaker: CircuitBreaker) -> None:
        self.drain = drain
        self.breaker = breaker
        self.model_loaded = threading.Event()

    def not_ready_reasons(self) -> list[str]:
        reasons = []
        if not self.model_loaded.is_set():
            reasons.append("default model not loaded yet")
        if self.breaker.is_open:
            reasons.append(
                f"circuit breaker open after {self.breaker.consecutive_failures} failures in a row"
            )
        if self.drain.draining:
            reasons.append("draining (shutting down)")
        return reasons

    def alive(self) -> bool:
        return not self.breaker.is_open


class HealthServer:
    """Serves the probes and the metrics on `port` from a daemon thread."""

    def __init__(
        self, port: int, health: WorkerHealth, metrics: WorkerMetrics, host: str = "0.0.0.0"
    ) -> None:
        handler = _handler_class(health, metrics)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler_class(health: WorkerHealth, metrics: WorkerMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                alive = health.alive()
                self._json(200 if alive else 503, {"alive": alive})
            elif path == "/readyz":
                reasons = health.not_ready_reasons()
                metrics.ready.set(0 if reasons else 1)
                self._json(503 if reasons else 200, {"ready": not reasons, "reasons": reasons})
            elif path == "/metrics":
                metrics.ready.set(0 if health.not_ready_reasons() else 1)
                self._send(200, CONTENT_TYPE_LATEST, metrics.exposition())
            else:
                self._json(404, {"error": f"no route {path}"})

        def _json(self, status: int, body: dict[str, object]) -> None:
            self._send(status, "application/json", json.dumps(body).encode())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: no access log
            return None

    return Handler
