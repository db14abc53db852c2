"""`/healthz` (the process serves), `/readyz` (its backends answer), `/metrics` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from genjob_api.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: Redis (and the Kubernetes API in cluster mode) answer")
def readyz(state: StateDep) -> JSONResponse:
    problems = []
    try:
        state.client.ping()
    except Exception as exc:
        problems.append(f"redis unreachable: {type(exc).__name__}")
    if state.settings.api.mode == "cluster":
        reason = state.backend.not_ready_reason()
        if reason:
            problems.append(reason)
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready", "mode": state.settings.api.mode})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
