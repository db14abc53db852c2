"""Tiers: a tier is a name plus its queue, its worker pool, its limits and its weight.

The defaults, highest first, are enterprise > studio > pro > starter > free. Operators
and the gateway check a job against its tier's limits; workers consume the queues of an
ordered list of tiers; the weight orders tiers when several are consumed together.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

TIER_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"


class TierLimits(BaseModel):
    """What one job of a tier may ask for, and how much a tenant may run at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_width: int = Field(1024, ge=64, le=4096, multiple_of=8, description="Largest image width in pixels.")
    max_height: int = Field(
        1024, ge=64, le=4096, multiple_of=8, description="Largest image height in pixels."
    )
    max_steps: int = Field(50, ge=1, le=500, description="Most denoising steps per job.")
    max_images: int = Field(4, ge=1, le=16, description="Most images per job (numImages).")
    max_concurrent_per_tenant: int = Field(
        4, ge=1, le=10_000, description="Jobs of one tenant admitted (queued or running) at once."
    )
    # The spec's defaults (priority 0, maxAttempts 3, timeoutSeconds 600) are the lowest bounds
    # allowed here, so a job that leaves these fields out is admitted in every tier.
    max_priority: int = Field(
        0, ge=0, le=9, description="Highest priority a job may ask for (it jumps the tier's queue)."
    )
    max_attempts: int = Field(3, ge=3, le=20, description="Most attempts (maxAttempts) a job may ask for.")
    max_timeout_seconds: int = Field(
        600, ge=600, le=86_400, description="Longest per-attempt deadline (timeoutSeconds) a job may ask for."
    )


class TierConfig(BaseModel):
    """One tier: its limits, its scheduling weight and which tenants may use it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: int = Field(1, ge=1, le=1000, description="Higher weight is served first when pools share tiers.")
    limits: TierLimits = TierLimits()
    allowed_tenants: list[str] | None = Field(
        None, description="Tenants allowed in this tier; None allows every tenant."
    )
    spill_over_to: list[str] = Field(
        default_factory=list, description="Lower tiers this tier's workers also serve when idle."
    )

    def allows_tenant(self, tenant: str) -> bool:
        return self.allowed_tenants is None or tenant in self.allowed_tenants


def _tier(
    weight: int,
    spill: list[str],
    size: int,
    steps: int,
    images: int,
    concurrent: int,
    priority: int,
    attempts: int,
    timeout: int,
) -> TierConfig:
    limits = TierLimits(
        max_width=size,
        max_height=size,
        max_steps=steps,
        max_images=images,
        max_concurrent_per_tenant=concurrent,
        max_priority=priority,
        max_attempts=attempts,
        max_timeout_seconds=timeout,
    )
    return TierConfig(weight=weight, limits=limits, spill_over_to=spill)  # fmt: skip


def default_tiers() -> dict[str, TierConfig]:
    """The built-in tiers, highest first (the chart's values.yaml lists the same limits)."""
    return {  # weight, spill-over, size, steps, images, concurrent, priority, attempts, timeout
        "enterprise": _tier(16, ["studio"], 2048, 150, 8, 64, 9, 10, 7200),
        "studio": _tier(8, ["pro"], 1536, 100, 8, 16, 6, 8, 3600),
        "pro": _tier(4, ["starter"], 1024, 75, 4, 8, 4, 5, 1800),
        "starter": _tier(2, ["free"], 768, 50, 2, 4, 2, 3, 900),
        "free": _tier(1, [], 512, 30, 1, 1, 0, 3, 600),
    }


def validate_tier_name(name: str) -> str:
    if not re.fullmatch(TIER_NAME_PATTERN, name):
        raise ValueError(
            f"tier name {name!r} must be lowercase letters, digits and '-', starting with a letter "
            "(at most 31 characters)"
        )
    return name


def check_tiers(tiers: dict[str, TierConfig]) -> dict[str, TierConfig]:
    """Validate a tier table: at least one tier, valid names, spill-over only to known tiers."""
    if not tiers:
        raise ValueError("at least one tier must be configured")
    for name, tier in tiers.items():
        validate_tier_name(name)
        unknown = [t for t in tier.spill_over_to if t not in tiers]
        if unknown:
            raise ValueError(f"tier {name!r} spills over to unknown tier(s) {unknown}")
    return tiers


def ordered_tiers(tiers: dict[str, TierConfig]) -> list[str]:
    """Tier names, highest weight first (ties keep configuration order)."""
    return sorted(tiers, key=lambda n: -tiers[n].weight)


def consumption_order(tiers: dict[str, TierConfig], own: list[str], spill_over: bool) -> list[str]:
    """The tiers a worker pool claims from, in order: its own, then (if enabled) their spill-over tiers."""
    unknown = [t for t in own if t not in tiers]
    if unknown:
        raise ValueError(f"unknown tier(s) {unknown}; configured tiers are {list(tiers)}")
    order = list(own)
    if spill_over:
        for name in own:
            for lower in tiers[name].spill_over_to:
                if lower not in order:
                    order.append(lower)
    return order
