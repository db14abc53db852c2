"""`/v1/queues`: per tier, what is waiting and running, and a rough wait estimate."""

from __future__ import annotations

from fastapi import APIRouter

from genjob_api.deps import CallerDep, StateDep
from genjob_api.models import ErrorOut, QueuesOut, TierQueue

router = APIRouter(prefix="/v1/queues", tags=["queues"])


@router.get(
    "", response_model=QueuesOut, responses={401: {"model": ErrorOut}}, summary="Queue depths and waits"
)
def list_queues(caller: CallerDep, state: StateDep) -> QueuesOut:
    stats = state.queue.stats(state.settings.ordered_tier_names())
    return QueuesOut(
        workers=state.queue.active_workers(),
        tiers=[
            TierQueue(
                tier=s.tier,
                pending=s.pending,
                in_flight=s.inflight,
                delayed=s.delayed,
                dead_lettered=s.dead,
                oldest_pending_age_seconds=round(s.oldest_pending_age_seconds, 3),
                workers=s.workers,
                estimated_wait_seconds=state.estimator.estimate(s.pending + s.inflight, s.workers)
                if s.pending
                else 0.0,
            )
            for s in stats
        ],
    )
