"""GenerationJobSpec limits, tier checks and admission."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from genjob.admission import ModelNotConfiguredError, TenantNotAllowedError, admit, new_job
from genjob.batching import batch_key
from genjob.errors import InvalidSpecError, UnknownTierError
from genjob.jobspec import GenerationJobSpec, Phase
from genjob.settings import GenjobSettings
from genjob.tiers import TierConfig


def spec(**kw: object) -> GenerationJobSpec:
    return GenerationJobSpec.model_validate({"tier": "free", "prompt": "a red fox", **kw})


def test_wire_format_is_camel_case_and_round_trips() -> None:
    s = spec(negativePrompt="blurry", guidanceScale=5, numImages=1, width=256, height=128)
    wire = s.to_wire()
    assert wire["negativePrompt"] == "blurry" and wire["guidanceScale"] == 5.0 and "seed" not in wire
    assert GenerationJobSpec.model_validate(wire) == s


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("width", 513, "multiple of 8"),
        ("height", 32, "greater than or equal to 64"),
        ("steps", 0, "greater than or equal to 1"),
        ("guidanceScale", -1, "greater than or equal to 0"),
        ("numImages", 17, "less than or equal to 16"),
        ("prompt", "", "at least 1 character"),
        ("prompt", "x" * 2001, "at most 2000 characters"),
        ("seed", -1, "greater than or equal to 0"),
        ("timeoutSeconds", 0, "greater than or equal to 1"),
        ("maxAttempts", 0, "greater than or equal to 1"),
        ("tier", "Gold!", "should match pattern"),
        ("unknownField", 1, "Extra inputs are not permitted"),
    ],
)
def test_invalid_fields_are_refused_with_a_specific_message(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        spec(**{field: value})
    assert field in str(info.value)


def test_strength_needs_an_init_image() -> None:
    with pytest.raises(ValidationError, match="strength is only valid together with initImage"):
        spec(strength=0.5)
    assert spec(strength=0.5, initImage="data:image/png;base64,AAAA").strength == 0.5
    with pytest.raises(ValidationError, match="steps x strength must be at least 1"):
        spec(strength=0.1, steps=5, initImage="data:image/png;base64,AAAA")
    with pytest.raises(ValidationError, match="greater than 0"):
        spec(strength=0, initImage="data:image/png;base64,AAAA")


def test_tier_limits_are_enforced_with_every_problem_named() -> None:
    settings = GenjobSettings()
    with pytest.raises(InvalidSpecError) as info:
        admit(spec(width=1024, steps=31), "acme", settings)
    assert "width 1024 exceeds the free tier maximum 512" in str(info.value)
    assert "steps 31 exceeds the free tier maximum 30" in str(info.value)


def test_tiers_bound_priority_attempts_and_timeout() -> None:
    """A caller cannot pick the tier's priority, retries or deadline: each is bounded by the
    tier, and the spec's defaults fit every default tier."""
    settings = GenjobSettings()
    assert admit(spec(), "acme", settings).priority == 0
    with pytest.raises(InvalidSpecError) as info:
        admit(spec(priority=9, maxAttempts=20, timeoutSeconds=86400), "acme", settings)
    assert "priority 9 exceeds the free tier maximum 0" in str(info.value)
    assert "maxAttempts 20 exceeds the free tier maximum 3" in str(info.value)
    assert "timeoutSeconds 86400 exceeds the free tier maximum 600" in str(info.value)
    assert admit(spec(tier="enterprise", priority=9, maxAttempts=10), "acme", settings).priority == 9
    with pytest.raises(InvalidSpecError, match="priority 5 exceeds the pro tier maximum 4"):
        admit(spec(tier="pro", priority=5), "acme", settings)


def test_admission_resolves_the_default_model_and_rejects_unknown_ones() -> None:
    settings = GenjobSettings()
    assert admit(spec(), "acme", settings).model == "tiny"
    with pytest.raises(ModelNotConfiguredError, match="configured models: tiny"):
        admit(spec(model="sdxl-base"), "acme", settings)


def test_admission_rejects_unknown_tiers_and_disallowed_tenants() -> None:
    settings = GenjobSettings(
        tiers={"free": TierConfig(allowed_tenants=["acme"])}, worker={"tiers": ["free"]}
    )
    assert admit(spec(), "acme", settings).tier == "free"
    with pytest.raises(TenantNotAllowedError, match="tenant 'other' may not use tier 'free'"):
        admit(spec(), "other", settings)
    with pytest.raises(UnknownTierError, match="unknown tier 'pro'"):
        admit(spec(tier="pro"), "acme", settings)


def test_new_job_needs_an_admitted_spec_and_groups_compatible_jobs() -> None:
    settings = GenjobSettings()
    with pytest.raises(ValueError, match="admit"):
        new_job("a", spec())
    a = admit(spec(prompt="one", seed=1), "t", settings)
    b = admit(spec(prompt="two", seed=2), "t", settings)
    c = admit(spec(prompt="three", width=128), "t", settings)
    assert new_job("a", a).batch_key == new_job("b", b).batch_key != new_job("c", c).batch_key
    queued = new_job("a", a, {"name": "x"})
    assert queued.spec["model"] == "tiny" and queued.meta == {"name": "x"} and queued.max_attempts == 3


def test_final_phases() -> None:
    assert {p for p in Phase if p.is_final} == {Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED}


def test_queue_batch_key_is_the_workers_so_a_claimed_batch_runs_as_one_call() -> None:
    """The queue claims together exactly what the worker can run in one pipeline call."""
    settings = GenjobSettings()
    plain = admit(spec(prompt="one"), "t", settings)
    negative = admit(spec(prompt="two", negative_prompt="blurry"), "t", settings)
    img2img = admit(spec(prompt="three", init_image="data:image/png;base64,AA=="), "t", settings)
    assert new_job("a", plain).batch_key == batch_key(plain, "tiny")
    # SDXL treats "no negative prompt" differently from one: never one call, so never one claim.
    assert new_job("a", plain).batch_key != new_job("b", negative).batch_key
    # img2img runs alone: two such jobs are never claimed as one batch.
    assert batch_key(img2img, "tiny") is None
    assert new_job("c", img2img).batch_key != new_job("d", img2img).batch_key
