"""The error hierarchy of genjob: each class says what went wrong and carries what the caller needs."""

from __future__ import annotations


class GenjobError(Exception):
    """Base class of every genjob error."""


class InvalidSpecError(GenjobError, ValueError):
    """A job's parameters are invalid or exceed its tier's limits (never retried)."""


class UnknownTierError(GenjobError, ValueError):
    """A tier name that is not configured."""

    def __init__(self, tier: str, known: list[str]) -> None:
        super().__init__(f"unknown tier {tier!r}; configured tiers are {', '.join(known)}")
        self.tier = tier


class InvalidJobIdError(GenjobError, ValueError):
    """A job id that is empty, too long or has characters outside [A-Za-z0-9._:-]."""


class JobNotFoundError(GenjobError, LookupError):
    """No job record with this id (never enqueued, or its record expired)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r} in the queue (never enqueued, or finished and expired)")
        self.job_id = job_id


class LeaseLostError(GenjobError):
    """The caller's claim on a job is no longer valid (its lease was reaped or the job finished)."""

    def __init__(self, job_id: str, detail: str) -> None:
        super().__init__(f"lease on job {job_id!r} is no longer held: {detail}")
        self.job_id = job_id
        self.detail = detail


class NotDeadLetteredError(GenjobError):
    """Redrive asked for a job that is not in a dead-letter list."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} is not dead-lettered; only dead-lettered jobs can be redriven")
        self.job_id = job_id


class NotReplicatedError(GenjobError):
    """A write reached the primary but not enough replicas within the WAIT timeout: it is not
    yet durable against a failover (the caller should retry under its idempotency key)."""

    def __init__(self, acknowledged: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(
            f"{acknowledged} of {wanted} replica(s) acknowledged the write within {timeout_ms} ms"
        )
        self.acknowledged = acknowledged
        self.wanted = wanted
