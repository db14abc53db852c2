"""Request and response bodies of the REST API (camelCase on the wire, like the CRD).

`GenerationRequest` is derived from `GenerationJobSpec`'s fields, so limits stay in one
place; the tier and the owner come from the API key, never from the body.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, PrivateAttr, create_model
from pydantic.alias_generators import to_camel

from genjob.jobspec import ColdStart, GenerationJobSpec


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Webhook(Wire):
    """Where to POST the final state; signed with the API key's webhook secret."""

    url: AnyHttpUrl = Field(..., description="http(s) URL that receives the final state of the job.")


_FROM_KEY = {"tier", "owner", "ttl_seconds_after_finished"}

_RequestBase = create_model(  # type: ignore[call-overload]  # its overloads cannot type ** fields
    "_RequestBase",
    __base__=Wire,
    **{
        name: (info.annotation, info)
        for name, info in GenerationJobSpec.model_fields.items()
        if name not in _FROM_KEY
    },
)


class GenerationRequest(_RequestBase):
    """What to generate. Unset fields take the GenerationJob defaults; the key decides the tier."""

    if TYPE_CHECKING:  # fields copied from GenerationJobSpec above, read by name in the routes
        prompt: str
        negative_prompt: str

    webhook: Webhook | None = Field(None, description="Optional webhook called on completion or failure.")

    def spec_fields(self) -> dict[str, Any]:
        return self.model_dump(exclude={"webhook"}, exclude_unset=True)


class Status(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)


class ProgressOut(Wire):
    step: int
    total: int


class ImageOut(Wire):
    index: int
    url: str = Field(..., description="Path of the PNG on this gateway (needs the API key).")
    sha256: str
    width: int
    height: int
    size_bytes: int


class Generation(Wire):
    """A generation job as the API shows it."""

    id: str
    status: Status
    tier: str
    model: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    progress: ProgressOut | None = None
    queue_position: int | None = Field(None, description="0-based position in the tier's queue.")
    estimated_wait_seconds: float | None = None
    attempts: int = 0
    reason: str | None = None
    message: str | None = None
    seed: int | None = None
    queue_seconds: float | None = Field(None, description="Enqueue to the start of the latest attempt.")
    cold_start: ColdStart | None = Field(
        None, description="Set when the job was its worker's first: where its wait went (cold start)."
    )
    resumed_from_step: int | None = Field(
        None,
        description="Step the latest attempt resumed from (a preempted job's checkpoint); 0: from the start.",
    )
    steps_saved: int = Field(0, description="Denoising steps not run again thanks to checkpoints.")
    images: list[ImageOut] = Field(default_factory=list)
    spec: dict[str, Any] = Field(default_factory=dict, description="The GenerationJob spec (camelCase).")
    _store_uris: list[str] = PrivateAttr(default_factory=list)

    @property
    def store_uris(self) -> list[str]:
        """The result-store URIs of `images`, in order (read by the image route; never sent)."""
        return self._store_uris

    def set_store_uris(self, uris: list[str]) -> None:
        self._store_uris = list(uris)


class GenerationPage(Wire):
    items: list[Generation]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null at the end.")


class CancelOut(Wire):
    id: str
    outcome: str = Field(..., description="cancelled, cancel_requested or already_final.")
    generation: Generation | None = None


class TierQueue(Wire):
    tier: str
    pending: int
    in_flight: int
    delayed: int
    dead_lettered: int
    oldest_pending_age_seconds: float
    workers: int = Field(..., description="Active workers serving this tier (seen in the last minute).")
    estimated_wait_seconds: float


class QueuesOut(Wire):
    tiers: list[TierQueue]
    workers: int = Field(..., description="Active workers of all pools (a worker may serve several tiers).")


class DeadLetterOut(Wire):
    tier: str
    ids: list[str]


class RedriveOut(Wire):
    id: str
    status: Status


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorOut(BaseModel):
    error: ErrorDetail
