"""API errors: one exception type carrying an HTTP status and a specific code, and the handlers
that render every error (ours, FastAPI's validation errors, Starlette's HTTP errors, Redis
being unreachable) as
`{"error": {"code": ..., "message": ...}}`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from genjob.errors import NotReplicatedError


class ApiError(Exception):
    """An error answer: HTTP status, a stable machine-readable code and a message for people."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameters",
}


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """A code and a one-line message naming each bad field."""
    code = "invalid_parameters"
    messages = []
    for err in errors[:10]:
        where = _location(err.get("loc", ()))
        if where == "prompt" and err.get("type") == "string_too_long":
            code = "prompt_too_long"
        if err.get("type") in ("json_invalid", "model_attributes_type") or where == "body":
            code = "invalid_json" if err.get("type") == "json_invalid" else code
        messages.append(f"{where}: {err.get('msg', 'invalid')}")
    return code, "; ".join(messages)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, **exc.details), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = validation_message(list(exc.errors()))
        return error_response(422, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(NotReplicatedError)
    async def _not_replicated(_request: Request, exc: NotReplicatedError) -> JSONResponse:
        import structlog

        structlog.get_logger("genjob.api").warning("submit not replicated in time", error=str(exc))
        return error_response(
            503,
            "queue_not_durable",
            f"the job queue did not confirm the job on a replica in time ({exc}); retry shortly "
            "with the same Idempotency-Key (without one, a retry may create a second job)",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(redis.exceptions.OutOfMemoryError)
    async def _redis_full(_request: Request, exc: redis.RedisError) -> JSONResponse:
        import structlog

        structlog.get_logger("genjob.api").warning("redis refuses writes: maxmemory reached", error=str(exc))
        return error_response(
            503,
            "queue_full",
            "the job queue is full (Redis reached its memory limit); retry later",
            headers={"Retry-After": "30"},
        )

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def _redis_unavailable(_request: Request, exc: redis.RedisError) -> JSONResponse:
        import structlog

        structlog.get_logger("genjob.api").warning("redis unavailable", error=str(exc))
        return error_response(
            503,
            "queue_unavailable",
            "the job queue (Redis) is not reachable; retry shortly "
            "(an Idempotency-Key makes a retried submit safe)",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        import structlog

        structlog.get_logger("genjob.api").exception("unhandled error", error=str(exc))
        return error_response(500, "internal_error", "internal error; the gateway logged the details")
