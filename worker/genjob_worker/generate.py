"""Run one job (or a batch of compatible jobs) through a diffusers pipeline.

Seeds: image i of a job uses its own `torch.Generator` seeded `seed + i`, created on
the CPU (diffusers draws the initial noise there and moves it to the device), so image
i is reproducible on its own and across CPU and GPU workers. `choose_seed` picks the
seed when the spec has none; the caller records it in the job's result.

Steps: `on_step(step, total)` is called after every denoising step through diffusers'
`callback_on_step_end`. It may raise (usually `StopGeneration(reason)` for cancellation,
deadline or preemption); the exception leaves the pipeline call unchanged and the
pipeline stays usable for the next job. A `StepTracker` follows the call, so the caller can
capture the loop's state at a step boundary (a checkpoint, see `denoise_state.py`).

Resuming: given a `Checkpoint`, `run_generation` continues the job from the checkpoint's
step instead of starting over (same images, bit for bit on CPU); steps count over the
whole job, so progress goes on from where the checkpoint left it.

Batching: `run_batch` runs several compatible txt2img specs (same `genjob.batching.batch_key`) as ONE
pipeline call with a list of prompts and a list of generators, then splits the images
back per job; the images equal those of running each job alone with the same seed (up to
floating-point noise).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from PIL import Image

from genjob.batching import batch_key
from genjob.errors import GenjobError, InvalidSpecError
from genjob.jobspec import MAX_SEED, GenerationJobSpec, Reason
from genjob_worker.checkpoint import Checkpoint, CheckpointRefusedError
from genjob_worker.denoise_state import (
    NotResumableError,
    StepTracker,
    pipeline_fingerprint,
    restored_generators,
    resumed_scheduler,
)

DEFAULT_STRENGTH = 0.8  # diffusers' img2img default

StepCallback = Callable[[int, int], None]


class StopGeneration(GenjobError):
    """Raised by an `on_step` callback to stop a generation at a step boundary."""

    def __init__(self, reason: Reason | str, message: str = "") -> None:
        self.reason = Reason(reason)
        super().__init__(message or f"generation stopped: {self.reason.value}")


class PipelineProvider(Protocol):
    """What `run_generation` needs from the model registry."""

    def get(self, name: str) -> Any: ...

    def get_img2img(self, name: str) -> Any: ...


@dataclass
class GenerationOutput:
    """The images of one job and how they were made."""

    images: list[Image.Image]
    seed: int
    width: int
    height: int
    pipeline_seconds: float
    downscaled: bool = False
    resumed_from_step: int = 0  # steps a checkpoint saved (0: ran from the start)


def choose_seed(spec: GenerationJobSpec) -> int:
    """The spec's seed, or a random one that leaves room for `seed + i` within MAX_SEED."""
    if spec.seed is not None:
        return spec.seed
    return secrets.randbelow(MAX_SEED - 16 + 1)


def generators(seed: int, count: int, device: str = "cpu") -> list[torch.Generator]:
    """One generator per image, seeded seed, seed+1, ..."""
    return [torch.Generator(device=device).manual_seed(seed + i) for i in range(count)]


def _step_callback(on_step: StepCallback, tracker: StepTracker) -> Callable[..., dict[str, Any]]:
    def callback(
        pipe: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        on_step(*tracker.observe(pipe, step_index, callback_kwargs["latents"]))
        return callback_kwargs

    return callback


def run_generation(
    pipe_provider: PipelineProvider,
    spec: GenerationJobSpec,
    *,
    model_name: str,
    seed: int,
    on_step: StepCallback = lambda step, total: None,
    device: str = "cpu",
    init_image: Image.Image | None = None,
    size: tuple[int, int] | None = None,
    tracker: StepTracker | None = None,
    resume: Checkpoint | None = None,
) -> GenerationOutput:
    """Generate the images of `spec` (img2img when `init_image` is given) at `size` or the spec's size.

    `device` is where the random generators live; keep "cpu" for seeds that reproduce
    across machines. `init_image` is the resolved image (see `init_image.py`). With
    `resume`, the job continues from the checkpoint (its seed and size win).
    """
    tracker = tracker if tracker is not None else StepTracker()
    if resume is not None:
        return _continue(pipe_provider, spec, model_name, resume, on_step, tracker)
    width, height = size or (spec.width, spec.height)
    gens = generators(seed, spec.num_images, device)
    tracker.start(gens, None)
    kwargs: dict[str, Any] = {
        "prompt": spec.prompt,
        "negative_prompt": spec.negative_prompt or None,
        "num_inference_steps": spec.steps,
        "guidance_scale": spec.guidance_scale,
        "num_images_per_prompt": spec.num_images,
        "generator": gens,
        "callback_on_step_end": _step_callback(on_step, tracker),
    }
    if init_image is not None:
        strength = DEFAULT_STRENGTH if spec.strength is None else spec.strength
        if int(spec.steps * strength) < 1:
            raise InvalidSpecError(
                f"strength {strength} x steps {spec.steps} leaves no denoising step; raise strength or steps"
            )
        pipe = pipe_provider.get_img2img(model_name)
        if init_image.size != (width, height):
            init_image = init_image.resize((width, height), Image.Resampling.LANCZOS)
        kwargs.update(image=init_image, strength=strength)
    else:
        pipe = pipe_provider.get(model_name)
        kwargs.update(width=width, height=height)
    started = time.perf_counter()
    images = pipe(**kwargs).images
    elapsed = time.perf_counter() - started
    return GenerationOutput(
        images=list(images), seed=seed, width=width, height=height, pipeline_seconds=elapsed
    )


def _continue(
    pipe_provider: PipelineProvider,
    spec: GenerationJobSpec,
    model_name: str,
    checkpoint: Checkpoint,
    on_step: StepCallback,
    tracker: StepTracker,
) -> GenerationOutput:
    """Run the rest of a job from its checkpoint (img2img jobs too: see denoise_state.py)."""
    snap = checkpoint.snapshot
    base = pipe_provider.get(model_name)
    now_using = type(base.scheduler).__name__
    if now_using != snap.scheduler:
        raise CheckpointRefusedError(
            f"checkpoint was written with {snap.scheduler}, the model now uses {now_using}"
        )
    if snap.latents.dtype != base.unet.dtype:
        raise CheckpointRefusedError(
            f"checkpoint latents are {snap.latents.dtype}, the model runs {base.unet.dtype}"
        )
    if pipeline_fingerprint(base) != checkpoint.model_fingerprint:
        raise CheckpointRefusedError(
            f"checkpoint was written by another build of model {checkpoint.model!r} "
            "(weights folder, configs, scheduler or dtype differ)"
        )
    try:
        scheduler = resumed_scheduler(base.scheduler, snap.position, snap.scheduler_state)
    except NotResumableError as exc:
        raise CheckpointRefusedError(str(exc)) from None
    # A pipeline's __init__ may rewrite the scheduler it is given (SD 1.x pipelines turn
    # DDIM's and DDPM's `clip_sample` off), and from_pipe runs it: it gets a throwaway copy,
    # and the resumed scheduler, with the config the job started with, is set afterwards.
    pipe = type(base).from_pipe(base, scheduler=type(base.scheduler).from_config(base.scheduler.config))
    pipe.scheduler = scheduler
    pipe.set_progress_bar_config(disable=True)
    gens = restored_generators(snap.generator_states)
    tracker.start(gens, snap)
    started = time.perf_counter()
    try:
        images = pipe(
            prompt=spec.prompt,
            negative_prompt=spec.negative_prompt or None,
            num_inference_steps=spec.steps,
            guidance_scale=spec.guidance_scale,
            num_images_per_prompt=spec.num_images,
            width=checkpoint.width,
            height=checkpoint.height,
            generator=gens,
            latents=snap.latents,
            callback_on_step_end=_step_callback(on_step, tracker),
        ).images
    except NotResumableError as exc:  # the position does not fit the schedule
        raise CheckpointRefusedError(str(exc)) from None
    return GenerationOutput(
        images=list(images),
        seed=checkpoint.seed,
        width=checkpoint.width,
        height=checkpoint.height,
        pipeline_seconds=time.perf_counter() - started,
        downscaled=(checkpoint.width, checkpoint.height) != (spec.width, spec.height),
        resumed_from_step=snap.step,
    )


def run_batch(
    pipe_provider: PipelineProvider,
    specs: Sequence[GenerationJobSpec],
    *,
    model_name: str,
    seeds: Sequence[int],
    on_step: StepCallback = lambda step, total: None,
    device: str = "cpu",
    tracker: StepTracker | None = None,
) -> list[GenerationOutput]:
    """Run compatible txt2img specs as one pipeline call; one output per spec, in order.

    Each spec's pipeline_seconds is its share (by image count) of the call's time. A raising
    `on_step` stops the whole batch.
    """
    if len(specs) != len(seeds) or not specs:
        raise ValueError("run_batch needs one seed per spec and at least one spec")
    keys = {batch_key(spec, model_name) for spec in specs}
    if None in keys or len(keys) != 1:
        raise ValueError(f"specs are not batch-compatible: {sorted(map(str, keys))}")
    first = specs[0]
    prompts, negatives, gens = [], [], []
    for spec, seed in zip(specs, seeds, strict=True):
        prompts += [spec.prompt] * spec.num_images
        negatives += [spec.negative_prompt] * spec.num_images
        gens += generators(seed, spec.num_images, device)
    pipe = pipe_provider.get(model_name)
    tracker = tracker if tracker is not None else StepTracker()
    tracker.start(gens, None)
    started = time.perf_counter()
    images = pipe(
        prompt=prompts,
        negative_prompt=negatives if any(negatives) else None,
        width=first.width,
        height=first.height,
        num_inference_steps=first.steps,
        guidance_scale=first.guidance_scale,
        num_images_per_prompt=1,
        generator=gens,
        callback_on_step_end=_step_callback(on_step, tracker),
    ).images
    elapsed = time.perf_counter() - started
    outputs, start = [], 0
    for spec, seed in zip(specs, seeds, strict=True):
        share = elapsed * spec.num_images / len(images)
        outputs.append(
            GenerationOutput(
                images=list(images[start : start + spec.num_images]),
                seed=seed,
                width=first.width,
                height=first.height,
                pipeline_seconds=share,
            )
        )
        start += spec.num_images
    return outputs
