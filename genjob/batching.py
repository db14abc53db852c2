"""Which jobs can share one pipeline call: the batch key.

One function for both sides of the contract: admission stores it with the queued job, and the
claim script (claim.lua) hands a worker several jobs only while their keys are equal; the
worker groups what it claimed by the same key before running each group as one call. So a
claimed batch is exactly a batch the worker can run.
"""

from __future__ import annotations

from genjob.jobspec import GenerationJobSpec


def batch_key(spec: GenerationJobSpec, model: str) -> str | None:
    """Specs with equal keys can run as one pipeline call on `model`; None: the spec runs alone.

    img2img runs alone (each job has its own init image and strength). Whether a negative prompt
    is set is part of the key: SDXL treats "no negative prompt" (zero embeddings) differently
    from an empty one, so the two never share a call.
    """
    if spec.init_image is not None:
        return None
    negative = "negative" if spec.negative_prompt else "no-negative"
    return f"{model}|{spec.width}x{spec.height}|{spec.steps}|{spec.guidance_scale}|{negative}"


def queue_batch_key(job_id: str, spec: GenerationJobSpec, model: str) -> str:
    """The key stored with a queued job: `batch_key`, or one of its own for a job that runs alone."""
    return batch_key(spec, model) or f"alone|{job_id}"
