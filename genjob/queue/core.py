"""JobQueue: the Redis queue protocol every genjob component speaks.

Semantics (see docs/queue-protocol.md): enqueue is idempotent by id; a claim is atomic and
leaves a lease that heartbeats extend; expired leases are reaped back to the head of the
pending list with attempts+1, and dead-lettered past max attempts; completion is
idempotent and fenced by the lease token, so a holder whose lease was reaped cannot
overwrite a newer attempt. Jobs may run more than once (at-least-once), never zero times.
Each call is one round trip (one script) unless said otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import redis

from genjob.errors import JobNotFoundError, LeaseLostError, NotDeadLetteredError, UnknownTierError
from genjob.keys import RedisKeys
from genjob.queue.records import (
    CancelOutcome,
    Checkpointed,
    ClaimedJob,
    EnqueueResult,
    FinishResult,
    JobRecord,
    JobState,
    NewJob,
    Place,
    ReapResult,
    TierStats,
    Touch,
    WorkerStart,
    check_job_id,
)
from genjob.queue.scripts import QueueScripts
from genjob.settings import QueueSettings

# A worker is active while it claimed or heartbeated within this window (Redis's clock; the
# prelude's active_workers). Heartbeats come every few seconds, claims at least every block timeout.
ACTIVE_WORKER_WINDOW_MS = 60_000

_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)  # json.dumps would build one per call


def _json(value: Any) -> str:
    return _ENCODER.encode(value)


def enqueue_call(keys: RedisKeys, job: NewJob, events_max_length: int) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of enqueue.lua for a job (also the first ones of submit.lua), checked."""
    check_job_id(job.id)
    if not 0 <= job.priority <= 9:
        raise ValueError(f"priority {job.priority} must be between 0 and 9")
    if job.max_attempts < 1:
        raise ValueError(f"max_attempts {job.max_attempts} must be at least 1")
    return (
        [
            keys.job(job.id),
            keys.pending(job.tier),
            keys.queued_at(job.tier),
            keys.wake(job.tier),
            keys.events,
        ],
        [
            job.id,
            job.tier,
            _json(job.spec),
            job.priority,
            job.max_attempts,
            job.batch_key,
            _json(job.meta),
            keys.job_prefix,
            events_max_length,
        ],
    )


def _checkpoint_args(checkpoint: Checkpointed | None) -> list[Any]:
    return ["", ""] if checkpoint is None else [checkpoint.ref, checkpoint.step]


class JobQueue:
    """One client's view of the queue. Thread-safe as far as the redis client is."""

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        tiers: Sequence[str],
        settings: QueueSettings | None = None,
    ) -> None:
        if not client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("JobQueue needs a redis client created with decode_responses=True")
        self.client = client
        self.keys = keys
        self.tiers = list(tiers)
        self.settings = settings or QueueSettings()
        self.scripts = QueueScripts.register(client)
        self._maxlen = self.settings.events_max_length

    # -- checks -------------------------------------------------------------------------

    def _tier_of(self, job_id: str) -> str | None:
        return cast("str | None", self.client.hget(self.keys.job(job_id), "tier"))

    def _check_tier(self, tier: str) -> str:
        if tier not in self.tiers:
            raise UnknownTierError(tier, self.tiers)
        return tier

    # -- producers ----------------------------------------------------------------------

    def enqueue(self, job: NewJob, index: str | None = None) -> EnqueueResult:
        """Queue a job. A repeat of a known id changes nothing and returns created=False.

        `index`: a set that holds the id while the job is unfinished (added in the same
        script, also on a repeat), counted by `count_unfinished`."""
        self._check_tier(job.tier)
        keys, args = enqueue_call(self.keys, job, self._maxlen)
        if index is not None:
            keys.append(index)
        created, state, _ = self.scripts.enqueue(keys=keys, args=args)
        return EnqueueResult(created=bool(created), state=JobState(state))

    def cancel(self, job_id: str, message: str = "cancelled by request") -> CancelOutcome:
        """Cancel a job: a waiting one leaves the queue; a running one is flagged for its worker."""
        check_job_id(job_id)
        tier = self._tier_of(job_id)
        if tier is None:
            return CancelOutcome.NOT_FOUND
        k = self.keys
        ok, state = self.scripts.cancel(
            keys=[
                k.job(job_id),
                k.pending(tier),
                k.queued_at(tier),
                k.delayed(tier),
                k.events,
                k.orphaned_checkpoints,
            ],
            args=[job_id, message, self.settings.finished_retention_seconds, self._maxlen],
        )
        if ok:
            return CancelOutcome(state)
        return CancelOutcome.NOT_FOUND if state == "not_found" else CancelOutcome.ALREADY_FINAL

    # -- workers --------------------------------------------------------------------------

    def claim(
        self,
        tiers: Sequence[str],
        worker: str,
        *,
        max_jobs: int = 1,
        block_seconds: float = 0.0,
        cold: WorkerStart | None = None,
    ) -> list[ClaimedJob]:
        """Claim up to `max_jobs` jobs from `tiers`, in order. Jobs after the first share its
        batch key (same model and shape). With `block_seconds`, an idle caller waits on the
        tiers' wake lists (no polling) and tries once more when woken or timed out.
        `cold`: the worker has not run a job yet; its start-up goes on the jobs' records and
        `running` events (the cold-start phases)."""
        if not tiers:
            raise ValueError("claim needs at least one tier")
        for tier in tiers:
            self._check_tier(tier)
        if max_jobs < 1:
            raise ValueError(f"max_jobs {max_jobs} must be at least 1")
        cold_json = cold.to_json() if cold is not None else ""
        jobs = self._claim_once(tiers, worker, max_jobs, cold_json)
        if jobs or block_seconds <= 0:
            return jobs
        self.client.blpop([self.keys.wake(t) for t in tiers], timeout=block_seconds)
        return self._claim_once(tiers, worker, max_jobs, cold_json)

    def _claim_once(
        self, tiers: Sequence[str], worker: str, max_jobs: int, cold_json: str
    ) -> list[ClaimedJob]:
        k = self.keys
        keys = [k.events, k.workers]
        for t in tiers:
            keys += [k.pending(t), k.inflight(t), k.queued_at(t), k.delayed(t), k.wake(t), k.tier_workers(t)]
        lease_ms = int(self.settings.lease_seconds * 1000)
        flat = self.scripts.claim(
            keys=keys, args=[k.job_prefix, worker, lease_ms, max_jobs, self._maxlen, cold_json]
        )
        n, served = ClaimedJob.FIELDS, tuple(tiers)
        return [ClaimedJob.from_flat(flat[i : i + n], served) for i in range(0, len(flat), n)]

    def heartbeat(self, job: ClaimedJob, worker: str, checkpoint: Checkpointed | None = None) -> Touch:
        """Extend the lease (and record the job's latest checkpoint, when given). Answers whether
        the lease is still held and a cancel was asked."""
        return self._touch(job, worker, "", "", checkpoint)

    def report_progress(
        self, job: ClaimedJob, worker: str, step: int, total: int, checkpoint: Checkpointed | None = None
    ) -> Touch:
        """Record progress (an event on the stream) and extend the lease, in one round trip."""
        if not 0 <= step <= total:
            raise ValueError(f"progress step {step} must be between 0 and total {total}")
        return self._touch(job, worker, str(step), str(total), checkpoint)

    def _touch(
        self, job: ClaimedJob, worker: str, step: str, total: str, checkpoint: Checkpointed | None
    ) -> Touch:
        k = self.keys
        tiers = dict.fromkeys((job.tier, *job.served_tiers))  # the job's tier first, no repeats
        ok, value = self.scripts.touch(
            keys=[k.job(job.id), k.inflight(job.tier), k.events, k.workers]
            + [k.tier_workers(t) for t in tiers],
            args=[
                job.id,
                job.lease,
                int(self.settings.lease_seconds * 1000),
                worker,
                step,
                total,
                self._maxlen,
                *_checkpoint_args(checkpoint),
            ],
        )
        if not ok:
            return Touch(lease_held=False, cancel_requested=False)
        return Touch(lease_held=True, cancel_requested=bool(value))

    def complete(self, job: ClaimedJob, result: dict[str, Any], gpu_seconds: float = 0.0) -> FinishResult:
        """Record success. A repeat is a no-op (duplicate=True); a stale lease changes nothing."""
        return self._finish(job, "succeeded", "Completed", "", result, gpu_seconds, retryable=False)

    def fail(
        self,
        job: ClaimedJob,
        reason: str,
        message: str,
        *,
        retryable: bool,
        gpu_seconds: float = 0.0,
    ) -> FinishResult:
        """Record a failed attempt: retried after backoff while attempts remain and `retryable`,
        else final (state failed, id on the tier's dead-letter list)."""
        return self._finish(job, "failed", reason, message, None, gpu_seconds, retryable=retryable)

    def acknowledge_cancel(self, job: ClaimedJob, gpu_seconds: float = 0.0) -> FinishResult:
        """The worker stopped a job whose cancel flag it saw."""
        return self._finish(
            job, "cancelled", "Cancelled", "cancelled while running", None, gpu_seconds, False
        )

    def _finish(
        self,
        job: ClaimedJob,
        outcome: str,
        reason: str,
        message: str,
        result: dict[str, Any] | None,
        gpu_seconds: float,
        retryable: bool,
    ) -> FinishResult:
        k, s = self.keys, self.settings
        reply = self.scripts.finish(
            keys=[k.job(job.id), k.inflight(job.tier), k.delayed(job.tier), k.dead(job.tier), k.events],
            args=[
                job.id,
                job.lease,
                outcome,
                reason,
                message[:4000],
                _json(result) if result else "",
                f"{gpu_seconds:.3f}",
                1 if retryable else 0,
                int(s.retry_backoff_base_seconds * 1000),
                int(s.retry_backoff_max_seconds * 1000),
                s.finished_retention_seconds,
                s.dead_letter_max_length,
                self._maxlen,
            ],
        )
        return self._finish_result(reply)

    @staticmethod
    def _finish_result(reply: list[Any]) -> FinishResult:
        if reply[0]:
            delay = int(reply[2]) if len(reply) > 2 else None
            return FinishResult(applied=True, state=JobState(reply[1]), retry_delay_ms=delay)
        state = reply[2]
        return FinishResult(
            applied=False,
            state=None if state == "missing" else JobState(state),
            duplicate=reply[1] == "duplicate",
        )

    def requeue(
        self,
        job: ClaimedJob,
        reason: str = "Preempted",
        message: str = "",
        gpu_seconds: float = 0.0,
        checkpoint: Checkpointed | None = None,
    ) -> FinishResult:
        """Give a held job back to the head of its queue without counting the attempt (a job
        whose cancel was asked meanwhile is cancelled instead: state CANCELLED). With a
        checkpoint, the worker that claims it next resumes from it."""
        k = self.keys
        reply = self.scripts.requeue(
            keys=[
                k.job(job.id),
                k.inflight(job.tier),
                k.pending(job.tier),
                k.queued_at(job.tier),
                k.wake(job.tier),
                k.events,
            ],
            args=[
                job.id,
                job.lease,
                reason,
                message,
                f"{gpu_seconds:.3f}",
                self._maxlen,
                self.settings.finished_retention_seconds,
                *_checkpoint_args(checkpoint),
            ],
        )
        return self._finish_result(reply)

    def record_resume(self, job: ClaimedJob, total: int, resumed_from: int | None, message: str = "") -> bool:
        """Say what became of a claimed job's checkpoint: resumed from step `resumed_from` (a
        `resumed` event; `steps_saved` grows), or refused (`resumed_from` None: a `warning`
        event with `message`, and the reference is dropped). False when the lease is gone."""
        k = self.keys
        ok, _ = self.scripts.resume(
            keys=[k.job(job.id), k.events],
            args=[
                job.id,
                job.lease,
                "" if resumed_from is None else resumed_from,
                total,
                message[:4000],
                self._maxlen,
            ],
        )
        return bool(ok)

    def orphaned_checkpoints(self, count: int = 100) -> list[str]:
        """Up to `count` ids of jobs that ended away from a worker (cancelled while waiting,
        cancelled or dead-lettered by `reap`) with a checkpoint left in the result store. A
        worker deletes their checkpoints, then calls `checkpoints_deleted`."""
        return cast("list[str]", self.client.srandmember(self.keys.orphaned_checkpoints, count))

    def checkpoints_deleted(self, job_ids: Sequence[str]) -> None:
        """Take jobs whose checkpoints are deleted off the orphaned list."""
        if job_ids:
            self.client.srem(self.keys.orphaned_checkpoints, *job_ids)

    def require_lease(self, touch: Touch, job: ClaimedJob) -> None:
        """Raise LeaseLostError when a heartbeat says the lease is gone."""
        if not touch.lease_held:
            raise LeaseLostError(
                job.id, "the lease expired and was reaped, or the job was finished elsewhere"
            )

    # -- maintenance ---------------------------------------------------------------------

    def reap(self, tiers: Sequence[str] | None = None, limit: int = 500) -> ReapResult:
        """Requeue or dead-letter jobs whose lease expired; make due retries claimable.
        Safe to run from several processes at once (each tier is one atomic script)."""
        k, s = self.keys, self.settings
        total = ReapResult()
        with self.client.pipeline(transaction=False) as pipe:
            for t in tiers or self.tiers:
                self._check_tier(t)
                self.scripts.reap(
                    keys=[
                        k.inflight(t),
                        k.pending(t),
                        k.queued_at(t),
                        k.delayed(t),
                        k.wake(t),
                        k.dead(t),
                        k.events,
                        k.orphaned_checkpoints,
                    ],
                    args=[
                        k.job_prefix,
                        limit,
                        s.finished_retention_seconds,
                        s.dead_letter_max_length,
                        self._maxlen,
                    ],
                    client=pipe,
                )
            for requeued, dead, promoted, cancelled in pipe.execute():
                total = total + ReapResult(requeued, dead, promoted, cancelled)
        return total

    def dead_letters(self, tier: str, start: int = 0, count: int = 100) -> list[str]:
        """Dead-lettered job ids of a tier, newest first."""
        self._check_tier(tier)
        return cast("list[str]", self.client.lrange(self.keys.dead(tier), start, start + count - 1))

    def redrive(self, job_id: str) -> None:
        """Send a dead-lettered job back to its queue with attempts reset."""
        check_job_id(job_id)
        tier = self._tier_of(job_id)
        if tier is None:
            raise JobNotFoundError(job_id)
        k = self.keys
        ok, _ = self.scripts.redrive(
            keys=[k.job(job_id), k.dead(tier), k.pending(tier), k.queued_at(tier), k.wake(tier), k.events],
            args=[job_id, self._maxlen],
        )
        if not ok:
            raise NotDeadLetteredError(job_id)

    # -- reads -----------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        check_job_id(job_id)
        h = cast("dict[str, str]", self.client.hgetall(self.keys.job(job_id)))
        return JobRecord.from_hash(h) if h else None

    def get_many(self, job_ids: Sequence[str]) -> list[JobRecord | None]:
        """Several job records in one round trip."""
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.keys.job(check_job_id(job_id)))
            return [JobRecord.from_hash(h) if h else None for h in pipe.execute()]

    def known_ids(self, job_ids: Sequence[str]) -> set[str]:
        """The ids the queue has a record of (one round trip)."""
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(self.keys.job(check_job_id(job_id)))
            return {job_id for job_id, found in zip(job_ids, pipe.execute(), strict=True) if found}

    def count_unfinished(self, indexes: Sequence[str]) -> list[int]:
        """Unfinished jobs in each index set of `enqueue` (finished ones are dropped from it)."""
        if not indexes:
            return []
        counts = self.scripts.unfinished(keys=list(indexes), args=[self.keys.job_prefix])
        return [int(c) for c in counts]

    def place_in_line(self, job_id: str, tier: str) -> Place:
        """A job's place in its tier's line (priority jobs first, by rank; then the pending list,
        LPOS: O(N), for status reads), the line's length and the tier's active workers, in one
        round trip."""
        check_job_id(job_id)
        k = self.keys
        position, pending, workers = self.scripts.place(
            keys=[k.pending(self._check_tier(tier)), k.tier_workers(tier)],
            args=[job_id, ACTIVE_WORKER_WINDOW_MS],
        )
        return Place(None if position < 0 else position, pending, workers)

    def unfinished_ids(self) -> list[str]:
        """Ids pending, in flight or delayed in any tier (one round trip; the operator's sweep)."""
        k = self.keys
        with self.client.pipeline(transaction=False) as pipe:
            for t in self.tiers:
                pipe.lrange(k.pending(t), 0, -1)
                pipe.zrange(k.pending_by_priority(t), 0, -1)
                pipe.zrange(k.inflight(t), 0, -1)
                pipe.zrange(k.delayed(t), 0, -1)
            replies: list[list[str]] = pipe.execute()
        return [job_id for reply in replies for job_id in reply]

    def stats(self, tiers: Sequence[str] | None = None) -> list[TierStats]:
        """Pending, in-flight, delayed and dead-lettered counts, oldest pending age and active
        workers per tier, in one round trip (ages and the worker window on Redis's clock)."""
        names = list(tiers or self.tiers)
        for t in names:
            self._check_tier(t)
        k = self.keys
        with self.client.pipeline(transaction=False) as pipe:
            pipe.time()
            for t in names:
                pipe.llen(k.pending(t))
                pipe.zcard(k.pending_by_priority(t))
                pipe.zcard(k.inflight(t))
                pipe.zcard(k.delayed(t))
                pipe.llen(k.dead(t))
                pipe.zrange(k.queued_at(t), 0, 0, withscores=True)
            self.scripts.workers(
                keys=[k.tier_workers(t) for t in names], args=[ACTIVE_WORKER_WINDOW_MS], client=pipe
            )
            replies = pipe.execute()
        seconds, micros = replies[0]
        now_ms = seconds * 1000 + micros // 1000
        workers = replies[-1]
        out = []
        for i, t in enumerate(names):
            listed, ranked, inflight, delayed, dead, oldest = replies[1 + i * 6 : 7 + i * 6]
            age = max(0.0, (now_ms - oldest[0][1]) / 1000) if oldest else 0.0
            out.append(TierStats(t, listed + ranked, inflight, delayed, dead, age, workers[i]))
        return out

    def active_workers(self, tier: str | None = None) -> int:
        """Workers that claimed or heartbeated within ACTIVE_WORKER_WINDOW_MS (of one tier: that
        claimed from it or ran one of its jobs)."""
        key = self.keys.tier_workers(self._check_tier(tier)) if tier else self.keys.workers
        (count,) = self.scripts.workers(keys=[key], args=[ACTIVE_WORKER_WINDOW_MS])
        return int(count)
