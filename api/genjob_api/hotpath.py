"""Hot routes served straight from the middleware stack, past FastAPI's generic layers.

Between the app's own middlewares and a route, FastAPI runs a telemetry layer, an exception
layer, an exit-stack layer and its router on every request. For `POST /v1/generations`
those cost about a fifth of the gateway's CPU per submit (bench/gateway.py,
docs/performance.md), so `HotPathMiddleware`, the innermost of the app's middlewares, hands a
hot route's requests to the route's own ASGI app, wrapped in Starlette's ExceptionMiddleware
with the app's exception handlers: errors answer exactly as on any route, the metrics and
body-size layers still apply, and the route stays in the OpenAPI document. Every other
request goes on down the stack unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.routing import APIRoute
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send


class HotPathMiddleware:
    def __init__(
        self, app: ASGIApp, routes: Sequence[APIRoute], exception_handlers: Mapping[Any, Any]
    ) -> None:
        self.app = app
        for route in routes:
            if route.param_convertors:
                raise ValueError(f"hot routes are matched by exact path; {route.path} has parameters")
        # Unexpected errors (500, Exception) stay with the outer ServerErrorMiddleware, as elsewhere.
        handlers = {k: v for k, v in exception_handlers.items() if k not in (500, Exception)}
        self.routes = {
            (method, route.path): (route, ExceptionMiddleware(route.app, handlers=handlers))
            for route in routes
            for method in route.methods
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.routes.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        if hot is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = hot[0]  # as the router would set it (the metrics label requests by it)
        await hot[1](scope, receive, send)
