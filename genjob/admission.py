"""Admission: the checks the CRD schema cannot express, and turning a spec into a queued job.

Both the operator (cluster mode) and the gateway (local mode) call these, so a job is
judged the same way whichever door it came in by. Quota accounting (how many jobs a
tenant has running) is the caller's; the limit comes from the tier.
"""

from __future__ import annotations

from typing import Any

from genjob.batching import queue_batch_key
from genjob.errors import InvalidSpecError, UnknownTierError
from genjob.jobspec import GenerationJobSpec, check_against_tier
from genjob.queue import NewJob
from genjob.settings import GenjobSettings


class ModelNotConfiguredError(InvalidSpecError):
    """The job names a model no worker serves."""

    def __init__(self, model: str, known: list[str]) -> None:
        super().__init__(
            f"model {model!r} is not configured; configured models: {', '.join(known) or '(none)'}"
        )
        self.model = model


class TenantNotAllowedError(InvalidSpecError):
    """The tenant may not use this tier."""


def resolve_model(spec: GenerationJobSpec, settings: GenjobSettings) -> str:
    """The model the job will run on; it must be configured."""
    model = spec.effective_model(settings.default_model)
    if model not in settings.models:
        raise ModelNotConfiguredError(model, sorted(settings.models))
    return model


def admit(spec: GenerationJobSpec, tenant: str, settings: GenjobSettings) -> GenerationJobSpec:
    """Check tier, tenant and model; return the spec with its model resolved.

    Raises UnknownTierError, TenantNotAllowedError, ModelNotConfiguredError or InvalidSpecError,
    each with a message that says what to change.
    """
    tier = settings.tiers.get(spec.tier)
    if tier is None:
        raise UnknownTierError(spec.tier, list(settings.tiers))
    if not tier.allows_tenant(tenant):
        raise TenantNotAllowedError(
            f"tenant {tenant!r} may not use tier {spec.tier!r}; ask an admin or pick another tier"
        )
    check_against_tier(spec, spec.tier, tier)
    return spec.model_copy(update={"model": resolve_model(spec, settings)})


def new_job(job_id: str, spec: GenerationJobSpec, meta: dict[str, Any] | None = None) -> NewJob:
    """The queue entry for an admitted spec (its model must be resolved already)."""
    if spec.model is None:
        raise ValueError("admit() the spec before queueing it: its model is not resolved")
    return NewJob(
        id=job_id,
        tier=spec.tier,
        spec=spec.to_wire(),
        priority=spec.priority,
        max_attempts=spec.max_attempts,
        batch_key=queue_batch_key(job_id, spec, spec.model),
        meta=meta or {},
    )
