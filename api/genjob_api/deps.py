"""Dependencies of the routes, as `Annotated` aliases (override them in tests).

Authentication is in memory and the rate limit one pipelined round trip on the asyncio
Redis client, both `async` (no threadpool hop before the route runs). `CallerDep`
authenticates and counts the request; `AuthDep` only authenticates, for the submit route,
which counts the request in its own round trip.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from genjob.settings import GenjobSettings
from genjob_api.auth import Caller
from genjob_api.backends import JobBackend
from genjob_api.errors import ApiError
from genjob_api.metrics import ApiMetrics
from genjob_api.ratelimit import RateDecision
from genjob_api.state import GatewayState

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <API key>`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "or `X-API-Key: <key>`"},
}


async def get_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]


async def get_settings(state: StateDep) -> GenjobSettings:
    return state.settings


async def get_backend(state: StateDep) -> JobBackend:
    return state.backend


SettingsDep = Annotated[GenjobSettings, Depends(get_settings)]
BackendDep = Annotated[JobBackend, Depends(get_backend)]


async def authenticate(request: Request) -> Caller:
    """The caller of the API key in `Authorization: Bearer` or `X-API-Key` (read directly from
    the headers: one dependency instead of two security schemes; the schemes are declared in
    the OpenAPI document by `main.py`)."""
    state: GatewayState = request.app.state.gateway
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    key = credentials.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key", "")
    if not key:
        state.metrics.refused.labels("missing_api_key").inc()
        raise ApiError(
            401,
            "missing_api_key",
            "send your API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    caller = state.api_keys.lookup(key)
    if caller is None:
        state.metrics.refused.labels("invalid_api_key").inc()
        raise ApiError(
            401,
            "invalid_api_key",
            "the API key is not valid (revoked, mistyped, or for another deployment)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return caller


def rate_limit_error(decision: RateDecision, metrics: ApiMetrics) -> ApiError:
    metrics.refused.labels("rate_limited").inc()
    return ApiError(
        429,
        "rate_limited",
        f"rate limit of {decision.limit} requests per minute exceeded; "
        f"retry after {decision.retry_after_seconds}s",
        headers=decision.headers(),
    )


AuthDep = Annotated[Caller, Depends(authenticate)]


async def require_json(request: Request) -> None:
    """415 unless the body is declared JSON (`application/json` or `application/*+json`).

    FastAPI parses only such bodies as JSON; any other body would fail validation with a
    confusing type error, so say what to send instead."""
    content_type = request.headers.get("content-type")
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the request as JSON with `Content-Type: application/json` (got {content_type!r})",
        )


JsonBodyDep = Annotated[None, Depends(require_json)]


async def rate_limited(state: StateDep, caller: AuthDep, response: Response) -> Caller:
    decision = await state.limiter.hit(caller.key_id, caller.rate_limit_per_minute)
    if not decision.allowed:
        raise rate_limit_error(decision, state.metrics)
    response.headers.update(decision.headers())
    return caller


CallerDep = Annotated[Caller, Depends(rate_limited)]


async def require_admin(caller: CallerDep) -> Caller:
    if not caller.admin:
        raise ApiError(403, "admin_required", "this endpoint needs an admin API key")
    return caller


AdminDep = Annotated[Caller, Depends(require_admin)]
