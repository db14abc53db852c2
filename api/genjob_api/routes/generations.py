"""`/v1/generations`: submit, read, list, cancel, images, and the progress stream (SSE).

Reads, listing, cancel and images are plain `def` routes on the sync clients (FastAPI runs
them in its threadpool, so blocking calls never stall the event loop). Submit is `async`
on the asyncio Redis client: in local mode the rate limit and the enqueue are one Redis
script (an Idempotency-Key adds two round trips), with no thread hop.
The SSE route is `async` and reads the job in a thread per poll, so an open stream holds
no thread.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sse_starlette import EventSourceResponse

from genjob.admission import ModelNotConfiguredError, TenantNotAllowedError, admit
from genjob.destinations import non_public_address
from genjob.errors import InvalidSpecError, UnknownTierError
from genjob.jobspec import GenerationJobSpec
from genjob.queue.records import JOB_ID_PATTERN
from genjob.result_store import ResultNotFoundError
from genjob_api.auth import Caller
from genjob_api.deps import (
    AuthDep,
    BackendDep,
    CallerDep,
    JsonBodyDep,
    StateDep,
    rate_limit_error,
)
from genjob_api.errors import ApiError, validation_message
from genjob_api.idempotency import MAX_KEY_CHARS, fingerprint
from genjob_api.models import (
    CancelOut,
    ErrorOut,
    Generation,
    GenerationPage,
    GenerationRequest,
    Status,
)
from genjob_api.ratelimit import RateCounter, RateLimitedError
from genjob_api.sse import KEEPALIVE_SECONDS, held_stream, job_events
from genjob_api.state import GatewayState

router = APIRouter(prefix="/v1/generations", tags=["generations"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or invalid API key."},
    429: {"model": ErrorOut, "description": "Rate limit exceeded (see Retry-After)."},
}
JobId = Annotated[str, Path(description="Job id as returned by POST.", max_length=128)]


# Ids sort newest first: the Kubernetes API lists a namespace's objects in name order and cluster
# mode pages through that list, so an id starts with the milliseconds left until _ID_END_MS (a
# fixed width of 13 digits, year 2286), then random hex.
_ID_END_MS = 10**13


def new_job_id(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"gen-{_ID_END_MS - ms:013d}{secrets.token_hex(10)}"


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no generation {job_id!r} for this API key's tenant")


def _check_id(job_id: str) -> None:
    if not JOB_ID_PATTERN.fullmatch(job_id):
        raise _not_found(job_id)


def _accepted(view: Generation, headers: dict[str, str]) -> Response:
    """202 with the job, serialized once by its own model (it is already valid: FastAPI's
    response_model pass would validate and encode it a second time)."""
    headers["Location"] = f"/v1/generations/{view.id}"
    return Response(view.model_dump_json(by_alias=True), 202, headers, media_type="application/json")


def build_spec(body: GenerationRequest, caller: Caller, state: GatewayState) -> GenerationJobSpec:
    """The admitted spec of a request, or an ApiError saying what to change."""
    api = state.settings.api
    for field, text in (("prompt", body.prompt), ("negativePrompt", body.negative_prompt)):
        if len(text) > api.max_prompt_chars:
            state.metrics.refused.labels("prompt_too_long").inc()
            raise ApiError(
                422,
                "prompt_too_long",
                f"{field} has {len(text)} characters; the limit is {api.max_prompt_chars}",
            )
    if body.webhook is not None:
        if not caller.webhook_secret:
            raise ApiError(
                422,
                "webhook_not_configured",
                "this API key has no webhook signing secret; ask an admin to set webhook_secret on the key",
            )
        host = body.webhook.url.host or ""
        refused = None if api.webhook_allow_private else non_public_address(host)
        if refused:
            raise ApiError(
                422,
                "webhook_url_not_allowed",
                f"webhook host {host!r} is not a public address ({refused}); use a public URL, or "
                "ask an operator to set api.webhook_allow_private",
            )
    try:
        spec = GenerationJobSpec(**body.spec_fields(), tier=caller.tier, owner=caller.tenant)
        return admit(spec, caller.tenant, state.settings)
    except ValidationError as exc:
        code, message = validation_message(list(exc.errors()))
        raise ApiError(422, code, message) from None
    except ModelNotConfiguredError as exc:
        raise ApiError(422, "model_not_found", str(exc)) from None
    except TenantNotAllowedError as exc:
        raise ApiError(403, "tier_not_allowed", str(exc)) from None
    except UnknownTierError as exc:
        raise ApiError(403, "tier_not_configured", f"this API key's tier is not served here: {exc}") from None
    except InvalidSpecError as exc:
        raise ApiError(422, "tier_limit_exceeded", str(exc)) from None


@router.post(
    "",
    status_code=202,
    response_model=Generation,
    responses={
        **_ERRORS,
        400: {"model": ErrorOut, "description": "The body is not readable as JSON text (e.g. not UTF-8)."},
        409: {"model": ErrorOut, "description": "Idempotency-Key reused with a different body."},
        413: {"model": ErrorOut, "description": "Body too large."},
        415: {"model": ErrorOut, "description": "The body is not JSON (Content-Type)."},
        422: {
            "model": ErrorOut,
            "description": "Invalid parameters, prompt too long, or over the tier's limits.",
        },
    },
    summary="Submit a generation",
)
async def create_generation(
    caller: AuthDep,
    _json: JsonBodyDep,
    body: GenerationRequest,
    state: StateDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=MAX_KEY_CHARS,
            description="Same key and body: the same job; same key, other body: 409.",
        ),
    ] = None,
) -> Response:
    spec = build_spec(body, caller, state)
    headers: dict[str, str] = {}
    job_id = new_job_id()
    meta: dict[str, Any] = {"tenant": caller.tenant, "key_id": caller.key_id}
    if body.webhook is not None:
        meta["webhook"] = str(body.webhook.url)
    counter = state.limiter.counter(caller.key_id, caller.rate_limit_per_minute)
    rate: RateCounter | None = counter  # where the submit counts the request
    if idempotency_key is not None:
        # Counted before the claim (a replay is a request too), so not again by the submit.
        counted = await state.limiter.count(counter)
        if not counted.allowed:
            raise rate_limit_error(counted, state.metrics)
        headers.update(counted.headers())
        rate = None
        claim = await state.idempotency.claim(
            caller.key_id, idempotency_key, fingerprint(body.model_dump(mode="json")), job_id
        )
        if not claim.fresh:
            if not claim.same_body:
                raise ApiError(
                    409,
                    "idempotency_conflict",
                    "this Idempotency-Key was used with a different request body; use a new key",
                )
            headers["Idempotent-Replayed"] = "true"
            earlier = await run_in_threadpool(state.backend.get, claim.job_id, caller)
            if earlier is not None:
                return _accepted(earlier, headers)
            job_id = claim.job_id  # the first request is still creating it: create it (idempotent by id)
    try:
        view, decision = await state.backend.submit(job_id, spec, caller, meta, rate)
    except RateLimitedError as exc:
        raise rate_limit_error(exc.decision, state.metrics) from None
    except ApiError:
        # Refused (admission, tenant): nothing was created, so the caller may fix the body and
        # retry under the same key. Any other error (a timeout, a lost connection) may come
        # after the job was created: the key keeps its job id, and a retry finds or creates
        # that one job, never a second.
        if idempotency_key is not None:
            await state.idempotency.release(caller.key_id, idempotency_key)
        raise
    if decision is not None:
        headers.update(decision.headers())
    state.metrics.count_submitted(spec.tier)
    return _accepted(view, headers)


@router.get("", response_model=GenerationPage, responses=_ERRORS, summary="List your generations")
def list_generations(
    caller: CallerDep,
    backend: BackendDep,
    status: Annotated[Status | None, Query(description="Only jobs in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(max_length=256, description="next_cursor of the previous page.")
    ] = None,
) -> GenerationPage:
    return backend.list(caller, status, limit, cursor)


@router.get(
    "/{job_id}",
    response_model=Generation,
    responses={**_ERRORS, 404: {"model": ErrorOut}},
    summary="Read a generation",
)
def get_generation(job_id: JobId, caller: CallerDep, backend: BackendDep) -> Generation:
    _check_id(job_id)
    view = backend.get(job_id, caller)
    if view is None:
        raise _not_found(job_id)
    return view


@router.delete(
    "/{job_id}",
    response_model=CancelOut,
    responses={**_ERRORS, 404: {"model": ErrorOut}},
    summary="Cancel a generation",
)
def cancel_generation(job_id: JobId, caller: CallerDep, backend: BackendDep) -> CancelOut:
    _check_id(job_id)
    outcome = backend.cancel(job_id, caller)
    if outcome is None:
        raise _not_found(job_id)
    return CancelOut(id=job_id, outcome=outcome[0], generation=outcome[1])


@router.get(
    "/{job_id}/images/{index}",
    response_class=Response,
    responses={
        **_ERRORS,
        200: {"content": {"image/png": {}}, "description": "The PNG."},
        404: {"model": ErrorOut},
        409: {"model": ErrorOut, "description": "The job has not succeeded (yet)."},
    },
    summary="Download an image",
)
def get_image(
    job_id: JobId,
    index: Annotated[int, Path(ge=0, le=63)],
    caller: CallerDep,
    state: StateDep,
) -> Response:
    _check_id(job_id)
    view = state.backend.get(job_id, caller)
    if view is None:
        raise _not_found(job_id)
    if view.status != Status.SUCCEEDED:
        raise ApiError(
            409, "not_ready", f"generation {job_id} is {view.status.value}; images exist once it succeeded"
        )
    if index >= len(view.store_uris):
        raise ApiError(404, "image_not_found", f"generation {job_id} has {len(view.store_uris)} image(s)")
    try:
        data = state.results.open(view.store_uris[index])
    except ResultNotFoundError:  # its message names store paths: not for clients
        raise ApiError(
            404, "image_not_found", f"image {index} of generation {job_id} is not in the result store"
        ) from None
    return Response(
        data,
        media_type="image/png",
        headers={
            "ETag": f'"{view.images[index].sha256}"',
            "Cache-Control": "private, max-age=86400, immutable",
        },
    )


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={
        **_ERRORS,
        200: {"content": {"text/event-stream": {}}, "description": "status, progress, then the final state."},
        404: {"model": ErrorOut},
        429: {
            "model": ErrorOut,
            "description": "too_many_streams: this key holds api.max_streams_per_key open.",
        },
    },
    summary="Stream progress (server-sent events)",
)
async def stream_events(
    job_id: JobId, caller: CallerDep, backend: BackendDep, state: StateDep
) -> EventSourceResponse:
    _check_id(job_id)
    if await run_in_threadpool(backend.get, job_id, caller) is None:
        raise _not_found(job_id)
    if not state.streams.take(caller.key_id):
        raise ApiError(
            429,
            "too_many_streams",
            f"this API key has {state.streams.per_key} event streams open already; close one first",
        )
    events = job_events(backend.stream_reader(job_id, caller))
    return EventSourceResponse(
        held_stream(events, state.streams, caller.key_id),
        ping=KEEPALIVE_SECONDS,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
