"""Admin-only: the dead-letter lists and redriving a dead-lettered job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from genjob.errors import JobNotFoundError, NotDeadLetteredError
from genjob.queue.records import JOB_ID_PATTERN
from genjob_api.deps import AdminDep, StateDep
from genjob_api.errors import ApiError
from genjob_api.models import DeadLetterOut, ErrorOut, RedriveOut, Status

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut, "description": "Not an admin key."}},
)


@router.get("/dead-letters", response_model=list[DeadLetterOut], summary="Dead-lettered job ids per tier")
def dead_letters(
    admin: AdminDep,
    state: StateDep,
    tier: Annotated[str | None, Query(max_length=31, description="One tier; all when absent.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetterOut]:
    tiers = state.settings.ordered_tier_names()
    if tier is not None:
        if tier not in tiers:
            raise ApiError(
                404, "unknown_tier", f"unknown tier {tier!r}; configured tiers: {', '.join(tiers)}"
            )
        tiers = [tier]
    return [DeadLetterOut(tier=t, ids=state.queue.dead_letters(t, 0, limit)) for t in tiers]


@router.post(
    "/dead-letters/{job_id}/redrive",
    response_model=RedriveOut,
    responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
    summary="Send a dead-lettered job back to its queue",
)
def redrive(job_id: str, admin: AdminDep, state: StateDep) -> RedriveOut:
    if not JOB_ID_PATTERN.fullmatch(job_id):
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    try:
        state.queue.redrive(job_id)
    except JobNotFoundError:
        raise ApiError(404, "not_found", f"no job {job_id!r}") from None
    except NotDeadLetteredError as exc:
        raise ApiError(409, "not_dead_lettered", str(exc)) from None
    return RedriveOut(id=job_id, status=Status.QUEUED)
