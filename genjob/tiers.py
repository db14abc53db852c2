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


def _tier(weight: int, size: int, steps: int, images: int, concurrent: int, spill: list[str]) -> TierConfig:
    return TierConfig(
        weight=weight,
        limits=TierLimits(
            max_width=size,
            max_height=size,
            max_steps=steps,
            max_images=images,
            max_concurrent_per_tenant=concurrent,
        ),
        spill_over_to=spill,
    )


def default_tiers() -> dict[str, TierConfig]:
    """The built-in tiers, highest first."""
    return {
        "enterprise": _tier(16, 2048, 150, 8, 64, ["studio"]),
        "studio": _tier(8, 1536, 100, 8, 16, ["pro"]),
        "pro": _tier(4, 1024, 75, 4, 8, ["starter"]),
        "starter": _tier(2, 768, 50, 2, 4, ["free"]),
        "free": _tier(1, 512, 30, 1, 1, []),
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
