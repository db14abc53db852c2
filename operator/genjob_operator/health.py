"""Liveness, readiness and /metrics on settings.operator.http_port (one small HTTP thread).

/healthz: 200 while the process is alive and every started background loop has
iterated recently (a wedged loop makes the kubelet restart the pod).
/readyz: 200 once the process is either the leader with its loops running, or a standby.
/metrics: Prometheus text format.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from genjob_operator.metrics import OperatorMetrics


class HealthServer:
    def __init__(self, port: int, metrics: OperatorMetrics, live: Callable[[], tuple[bool, str]]) -> None:
        self.port = port
        self.metrics = metrics
        self.live = live
        self._server: ThreadingHTTPServer | None = None

    def start(self, host: str = "0.0.0.0") -> int:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/metrics":
                    self._send(200, generate_latest(outer.metrics.registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, detail = outer.live()
                    self._send(200 if ok else 503, detail.encode(), "text/plain")
                else:
                    self._send(404, b"not found", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="health", daemon=True).start()
        return self._server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()


def loops_alive(
    threads: dict[str, threading.Thread], metrics: OperatorMetrics, max_age: float
) -> tuple[bool, str]:
    """Every loop thread alive and its heartbeat younger than `max_age` seconds."""
    now = time.time()
    for name, thread in threads.items():
        if not thread.is_alive():
            return False, f"loop {name} died"
        beat = metrics.loop_heartbeat.labels(loop=name)._value.get()
        if beat and now - beat > max_age:
            return False, f"loop {name} stuck for {now - beat:.0f}s"
    return True, "ok"
