"""Prometheus metrics of the gateway, in a registry of its own (one per app, so tests can
build many apps), and the ASGI middleware that times every request by route template."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "genjob_api_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "genjob_api_request_seconds",
            "HTTP request latency by route.",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.submitted = Counter(
            "genjob_api_generations_submitted_total",
            "Generations accepted, by tier.",
            ["tier"],
            registry=self.registry,
        )
        self.refused = Counter(
            "genjob_api_refusals_total",
            "Requests refused before any work, by error code.",
            ["code"],
            registry=self.registry,
        )
        self._submitted_by_tier: dict[str, Any] = {}

    def count_submitted(self, tier: str) -> None:
        child = self._submitted_by_tier.get(tier)
        if child is None:  # `labels()` costs more than the increment: keep the children
            child = self._submitted_by_tier[tier] = self.submitted.labels(tier)
        child.inc()


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # Labelled children cached by label values: `labels()` costs more than the update itself.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            children = self._children.get((name, method, status))
            if children is None:
                children = (
                    self.metrics.requests.labels(name, method, str(status)),
                    self.metrics.latency.labels(name, method),
                )
                self._children[(name, method, status)] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - start)
