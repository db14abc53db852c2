"""The GenerationJob contract: spec and status models, phases and reasons.

These pydantic models are the one source of truth for the schema: `genjob.crd` turns
them into the CRD's OpenAPI schema (plus CEL rules), the gateway validates requests with
them, and workers read jobs back through them. Field names are camelCase on the wire.
Limits that depend on the job's tier are checked by `check_against_tier`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from genjob.errors import InvalidSpecError
from genjob.tiers import TIER_NAME_PATTERN, TierConfig
from genjob.timestamps import iso_ms

if TYPE_CHECKING:
    from genjob.queue import WorkerStart

MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**32 - 1
MAX_INIT_IMAGE_CHARS = 1024 * 1024  # inline data URIs must fit a Kubernetes object (etcd caps at 1.5 MiB)
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
TENANT_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class Phase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def is_final(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)


class Reason(StrEnum):
    QUOTA_EXCEEDED = "QuotaExceeded"
    QUEUE_FULL = "QueueFull"  # Redis refuses writes (maxmemory): the job waits, Pending
    INVALID_SPEC = "InvalidSpec"
    MODEL_NOT_FOUND = "ModelNotFound"
    OUT_OF_MEMORY = "OutOfMemory"
    TIMEOUT = "Timeout"
    WORKER_LOST = "WorkerLost"
    PREEMPTED = "Preempted"
    CANCELLED = "Cancelled"
    GENERATION_ERROR = "GenerationError"
    COMPLETED = "Completed"


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """The camelCase dict as stored in the CR and sent over the API (unset optionals omitted)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class GenerationJobSpec(_Wire):
    """What to generate. Tier-independent limits live here; tier limits in `check_against_tier`."""

    tier: str = Field(..., pattern=TIER_NAME_PATTERN, description="Tier (queue and worker pool) of the job.")
    model: str | None = Field(
        None, pattern=MODEL_NAME_PATTERN, description="Model name; the configured default model when absent."
    )
    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS, description="Text prompt.")
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="What to steer away from.")
    width: int = Field(512, ge=64, le=4096, multiple_of=8, description="Image width, a multiple of 8.")
    height: int = Field(512, ge=64, le=4096, multiple_of=8, description="Image height, a multiple of 8.")
    steps: int = Field(30, ge=1, le=500, description="Denoising steps.")
    guidance_scale: float = Field(7.5, ge=0, le=50, description="Classifier-free guidance scale.")
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="Random seed; generated and recorded in status when absent."
    )
    num_images: int = Field(1, ge=1, le=16, description="Images to generate.")
    init_image: str | None = Field(
        None,
        max_length=MAX_INIT_IMAGE_CHARS,
        description="img2img source: a result URI, an allowed https URL, or a data:image/png;base64 URI.",
    )
    strength: float | None = Field(
        None,
        gt=0,
        le=1,
        description="img2img strength: near 0 keeps the init image, 1 ignores it; needs initImage "
        "and steps x strength >= 1.",
    )
    allow_downscale: bool = Field(
        False, description="On GPU out-of-memory, retry once at a reduced resolution instead of failing."
    )
    timeout_seconds: int = Field(600, ge=1, le=86400, description="Deadline for one attempt once running.")
    max_attempts: int = Field(3, ge=1, le=20, description="Attempts before the job fails (WorkerLost etc.).")
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description="Delete the job this long after it finishes; operator default when absent."
    )
    priority: int = Field(0, ge=0, le=9, description="Priority within the tier; higher runs first.")
    owner: str | None = Field(
        None,
        pattern=TENANT_PATTERN,
        description="Tenant: the namespace's tenant, unless the namespace may act for others.",
    )

    @model_validator(mode="after")
    def _strength_needs_init_image(self) -> GenerationJobSpec:
        if self.strength is not None and self.init_image is None:
            raise ValueError("strength is only valid together with initImage")
        if self.strength is not None and self.steps * self.strength < 1:
            raise ValueError(
                f"steps x strength must be at least 1 (img2img runs that many steps); "
                f"got {self.steps} x {self.strength}: raise steps or strength"
            )
        return self

    def effective_model(self, default_model: str) -> str:
        return self.model or default_model


# CEL rules the API server enforces on spec; kept beside the model so both change together.
SPEC_CEL_RULES: list[dict[str, str]] = [
    {
        "rule": "!has(self.strength) || has(self.initImage)",
        "message": "spec.strength is only valid together with spec.initImage",
        "fieldPath": ".strength",
    },
    {
        "rule": "!has(self.strength) || double(self.steps) * self.strength >= 1.0",
        "message": "spec.steps x spec.strength must be at least 1 (img2img runs that many steps)",
        "fieldPath": ".strength",
    },
    {
        # Transition rule (update only): after admission a user must not change the owner, the
        # tier or anything else the admission and quota were judged on (docs/security.md).
        "rule": "self == oldSelf",
        "message": "spec is immutable: delete the GenerationJob and create a new one",
    },
    {
        "rule": "self.width * self.height <= 4194304",
        "message": "spec.width x spec.height must be at most 4 megapixels (e.g. 2048x2048)",
    },
]


def check_against_tier(spec: GenerationJobSpec, tier_name: str, tier: TierConfig) -> None:
    """Raise InvalidSpecError naming every field that exceeds the tier's limits."""
    limits = tier.limits
    bounds = [
        ("width", spec.width, limits.max_width),
        ("height", spec.height, limits.max_height),
        ("steps", spec.steps, limits.max_steps),
        ("numImages", spec.num_images, limits.max_images),
        ("priority", spec.priority, limits.max_priority),
        ("maxAttempts", spec.max_attempts, limits.max_attempts),
        ("timeoutSeconds", spec.timeout_seconds, limits.max_timeout_seconds),
    ]
    problems = [
        f"{field} {value} exceeds the {tier_name} tier maximum {maximum}"
        for field, value, maximum in bounds
        if value > maximum
    ]
    if problems:
        raise InvalidSpecError("; ".join(problems) + ". Lower the values or use a higher tier.")


class Progress(_Wire):
    step: int = Field(0, ge=0)
    total: int = Field(0, ge=0)


class ImageResult(_Wire):
    uri: str
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(..., ge=0)
    width: int
    height: int


class JobResult(_Wire):
    images: list[ImageResult] = Field(default_factory=list)
    seed: int = Field(..., ge=0, le=MAX_SEED, description="Seed used for the first image (+i for image i).")
    model: str
    downscaled: bool = Field(False, description="True when the OOM retry ran at a reduced resolution.")


class Usage(_Wire):
    gpu_seconds: float = Field(0.0, ge=0, description="Pipeline time across attempts.")


class Condition(_Wire):
    type: str
    status: str = Field(..., pattern=r"^(True|False|Unknown)$")
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None


class ColdStart(_Wire):
    """Where a cold job's wait went: set when the job was its worker's first (RFC 3339 times).
    The worker reports its own start (its host's clock); the operator adds what its pod and
    node say (the API server's and kubelet's clocks), read once per cold job, written with the
    Running status (no extra write)."""

    pod: str | None = Field(None, description="namespace/name of the worker's pod.")
    node: str | None = None
    pod_created_at: str | None = None
    pod_scheduled_at: str | None = None
    node_created_at: str | None = None
    node_ready_at: str | None = None
    container_started_at: str | None = None
    worker_started_at: str | None = Field(None, description="The worker process's start.")
    worker_ready_at: str | None = Field(None, description="Models loaded; the worker turned ready.")
    model_load_seconds: float | None = Field(None, ge=0)

    @classmethod
    def from_worker_start(cls, start: WorkerStart) -> ColdStart:
        """The worker's part (the operator adds the pod's and node's)."""
        return cls(
            pod=start.pod or None,
            worker_started_at=iso_ms(start.process_started_at_ms),
            worker_ready_at=iso_ms(start.ready_at_ms),
            model_load_seconds=round(start.model_load_seconds, 3),
        )


class GenerationJobStatus(_Wire):
    """What the operator reports; every field optional so partial patches validate."""

    phase: Phase | None = None
    reason: Reason | None = None
    message: str | None = None
    attempts: int | None = Field(None, ge=0)
    queued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    worker: str | None = None
    model: str | None = None
    progress: Progress | None = None
    progress_text: str | None = Field(None, description="step/total, for the printer column.")
    result: JobResult | None = None
    usage: Usage | None = None
    conditions: list[Condition] | None = None
    observed_generation: int | None = None
    queue_seconds: float | None = Field(None, ge=0, description="Enqueue to the start of the latest attempt.")
    cold_start: ColdStart | None = None
    resumed_from_step: int | None = Field(
        None,
        ge=0,
        description="Step the latest attempt resumed from (a preempted job's checkpoint); 0: from the start.",
    )
    steps_saved: int | None = Field(
        None, ge=0, description="Denoising steps not run again thanks to checkpoints, over all attempts."
    )
