"""Builds the gateway app: `create_app(settings)`.

Shared clients (Redis, the Kubernetes client) and background threads (the webhook
dispatcher; the lease reaper in local mode) are created in the lifespan, not at import;
the clients live on `app.state.gateway`; routes reach them through the
dependencies in `deps.py`, which tests override.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from genjob import __version__
from genjob.settings import GenjobSettings
from genjob_api.auth import Caller
from genjob_api.deps import SECURITY_SCHEMES
from genjob_api.errors import install_error_handlers
from genjob_api.limits import BodySizeLimitMiddleware
from genjob_api.metrics import ApiMetrics, MetricsMiddleware
from genjob_api.reaper import LeaseReaper
from genjob_api.routes import admin, generations, health, queues
from genjob_api.state import GatewayState, build_state, consumer_name

DESCRIPTION = """Submit Stable Diffusion generations as queued jobs, follow their progress, download images.

Authenticate with `Authorization: Bearer <API key>`; the key decides your tenant and tier.
Errors are `{"error": {"code": ..., "message": ...}}`.
"""


def _start_webhooks(state: GatewayState) -> Any:
    from genjob_api.webhook_delivery import DeliveryPolicy, WebhookTarget
    from genjob_api.webhooks import WebhookDispatcher

    def secret_of(key_id: str) -> str | None:
        caller = state.api_keys.by_id(key_id)
        return caller.webhook_secret if caller else None

    def payload_of(target: WebhookTarget) -> dict[str, Any] | None:
        caller = Caller(target.key_id, target.tenant, "", False, None, None)
        view = state.backend.get(target.job_id, caller)
        if view is None or not view.status.is_final:
            return None
        return view.model_dump(mode="json", by_alias=True)

    dispatcher = WebhookDispatcher(
        state.client,
        state.keys,
        state.backend.webhook_target,
        secret_of,
        payload_of,
        consumer_name(),
        policy=DeliveryPolicy(allow_private=state.settings.api.webhook_allow_private),
        on_final=state.estimator.observe_event,
    )
    dispatcher.start()
    return dispatcher


def create_app(
    settings: GenjobSettings | None = None,
    *,
    state_factory: Callable[[GenjobSettings, ApiMetrics], GatewayState] | None = None,
    background: bool = True,
) -> FastAPI:
    """The gateway app. `background=False` starts no background threads (webhook delivery and,
    in local mode, the lease reaper), for benchmarks that count Redis round trips."""
    settings = settings or GenjobSettings()
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = (state_factory or build_state)(settings, metrics)
        app.state.gateway = state
        threads = []
        if background:
            threads.append(_start_webhooks(state))
            if settings.api.mode == "local":  # in a cluster the operator reaps
                reaper = LeaseReaper(state.queue, settings.operator.reaper_interval_seconds)
                reaper.start()
                threads.append(reaper)
        # What exists now (modules, the app, clients) lives as long as the process: keep the
        # cyclic GC from walking it on every older-generation collection. Worth ~10% CPU per
        # request on the submit path (bench/gateway.py, docs/performance.md).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            for thread in threads:
                thread.stop()
            await state.aclose()

    app = FastAPI(
        title="genjob gateway",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (generations, queues, admin, health):
        app.include_router(module.router)
    # Middlewares run outermost last-added: metrics, then the body-size limit.
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.api.max_body_bytes,
        on_refuse=lambda: metrics.refused.labels("body_too_large").inc(),
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.openapi = lambda: _openapi_with_security(app)  # type: ignore[method-assign]  # FastAPI's documented hook
    return app


def _openapi_with_security(app: FastAPI) -> dict[str, Any]:
    """The generated schema plus the API key schemes on every /v1 operation."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in schema["paths"].items():
        if path.startswith("/v1/"):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
    app.openapi_schema = schema
    return schema
