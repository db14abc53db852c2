"""Exactness of resumed jobs: an image continued from a checkpoint equals the uninterrupted one.

For the tiny SD 1.x and SDXL models and every scheduler in RESUMABLE_SCHEDULERS, a job
runs once without interruption while a snapshot is taken at every step boundary; each
snapshot goes through the checkpoint file format (encode, decode, check), and the job is
continued from steps 1, the middle, the last but one and the last (only the VAE decode
left). On CPU every continued image must be bit-identical to the uninterrupted one (step 0
is the uninterrupted run itself: a job preempted before its first step has no checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import diffusers
import numpy as np
import pytest
from PIL import Image

from genjob.jobspec import GenerationJobSpec
from genjob.settings import ModelConfig
from genjob_worker.checkpoint import Checkpoint, decode, encode, spec_digest
from genjob_worker.denoise_state import RESUMABLE_SCHEDULERS, StepTracker
from genjob_worker.generate import GenerationOutput, run_batch, run_generation
from genjob_worker.models import ModelRegistry

MODELS = {"sd": "tiny", "sdxl": "tiny-xl"}


@pytest.fixture(scope="module")
def own_registry(model_configs: dict[str, ModelConfig]) -> ModelRegistry:
    """A registry of this module's own: the tests swap schedulers on its pipelines."""
    return ModelRegistry(model_configs, device="cpu", max_loaded=2)


@pytest.fixture
def use_scheduler(own_registry: ModelRegistry) -> Iterator[Any]:
    """Swap a model's scheduler the way diffusers documents it (`from_config`), then restore it."""
    swapped: list[tuple[Any, Any]] = []

    def use(model: str, name: str) -> None:
        pipe = own_registry.get(model)
        swapped.append((pipe, pipe.scheduler))
        pipe.scheduler = getattr(diffusers, name).from_config(pipe.scheduler.config)
        own_registry._img2img.pop(model, None)  # the img2img pipeline is derived again with it

    yield use
    for pipe, scheduler in reversed(swapped):
        pipe.scheduler = scheduler


def _run_with_snapshots(
    registry: ModelRegistry, spec: GenerationJobSpec, model: str, **kwargs: Any
) -> tuple[GenerationOutput, dict[int, Checkpoint]]:
    tracker = StepTracker()
    checkpoints: dict[int, Checkpoint] = {}

    def on_step(step: int, total: int) -> None:
        snap = tracker.capture()
        checkpoint = Checkpoint(
            job_id="job-1",
            spec_sha256=spec_digest(spec.to_wire()),
            model=model,
            model_fingerprint=tracker.fingerprint(),
            seed=spec.seed or 0,
            width=spec.width,
            height=spec.height,
            snapshot=snap,
        )
        checkpoints[step] = decode(encode(checkpoint))  # through the file format

    output = run_generation(
        registry, spec, model_name=model, seed=spec.seed or 0, on_step=on_step, tracker=tracker, **kwargs
    )
    return output, checkpoints


def _pixels(output: GenerationOutput) -> list[np.ndarray]:
    return [np.asarray(image) for image in output.images]


def _resume_points(total: int) -> list[int]:
    return sorted({1, total // 2, total - 1, total})


def _check_resumes(registry: ModelRegistry, spec: GenerationJobSpec, model: str, **kwargs: Any) -> None:
    full, checkpoints = _run_with_snapshots(registry, spec, model, **kwargs)
    total = max(checkpoints)
    for step in _resume_points(total):
        checkpoint = checkpoints[step]
        checkpoint.check_for(job_id="job-1", spec_sha256=spec_digest(spec.to_wire()), model=model)
        seen: list[tuple[int, int]] = []
        record = seen.append
        resumed = run_generation(
            registry,
            spec,
            model_name=model,
            seed=0,
            resume=checkpoint,
            on_step=lambda s, t, record=record: record((s, t)),
        )
        assert resumed.resumed_from_step == step
        assert [s for s, _ in seen] == list(range(step + 1, total + 1)), (
            "progress continues from the checkpoint"
        )
        for a, b in zip(_pixels(full), _pixels(resumed), strict=True):
            assert np.array_equal(a, b), (
                f"resumed from step {step}/{total}: max diff {np.abs(a.astype(int) - b).max()}"
            )


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
@pytest.mark.parametrize("scheduler", sorted(RESUMABLE_SCHEDULERS))
def test_txt2img_resumed_from_any_step_is_bit_identical(
    own_registry: ModelRegistry, use_scheduler: Any, make_spec: Any, kind: str, scheduler: str
) -> None:
    use_scheduler(MODELS[kind], scheduler)
    spec = make_spec(steps=5, seed=11, num_images=2, guidance_scale=5.0, negative_prompt="blurry")
    _check_resumes(own_registry, spec, MODELS[kind])


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
@pytest.mark.parametrize("scheduler", ["EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler"])
def test_img2img_resumed_from_any_step_is_bit_identical(
    own_registry: ModelRegistry, use_scheduler: Any, make_spec: Any, kind: str, scheduler: str
) -> None:
    use_scheduler(MODELS[kind], scheduler)
    init = Image.fromarray((np.random.default_rng(3).random((64, 64, 3)) * 255).astype("uint8"))
    spec = make_spec(steps=8, seed=5, init_image="data:image/png;base64,AA==", strength=0.6)
    _check_resumes(own_registry, spec, MODELS[kind], init_image=init)


def test_batched_jobs_resume_alone_within_batching_noise(own_registry: ModelRegistry, make_spec: Any) -> None:
    """A preempted batch writes one checkpoint per job; each job resumes alone and matches the
    uninterrupted batch within batching's own tolerance (1/255 per pixel on CPU)."""
    specs = [
        make_spec(steps=4, seed=21, prompt="a red bicycle"),
        make_spec(steps=4, seed=40, prompt="a blue kite"),
    ]
    tracker = StepTracker()
    snaps = {}

    def on_step(step: int, total: int) -> None:
        snaps[step] = tracker.capture()

    outputs = run_batch(
        own_registry, specs, model_name="tiny", seeds=[21, 40], on_step=on_step, tracker=tracker
    )
    for index, (spec, output) in enumerate(zip(specs, outputs, strict=True)):
        checkpoint = Checkpoint(
            job_id=f"job-{index}", spec_sha256="-", model="tiny", model_fingerprint=tracker.fingerprint(),
            seed=spec.seed or 0, width=64, height=64, snapshot=snaps[2].images(index, 1),
        )  # fmt: skip
        resumed = run_generation(
            own_registry, spec, model_name="tiny", seed=0, resume=decode(encode(checkpoint))
        )
        a, b = _pixels(output)[0].astype(int), _pixels(resumed)[0].astype(int)
        assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize(
    "scheduler", ["DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "DEISMultistepScheduler"]
)
def test_multistep_checkpoints_leave_out_the_history_the_next_step_overwrites(
    own_registry: ModelRegistry, use_scheduler: Any, make_spec: Any, scheduler: str
) -> None:
    """These solvers shift their history before reading it: the oldest model output is never
    read again, so a checkpoint holds the latents and one model output (plus DPM-Solver++
    singlestep's group sample), not the whole history (the resumed images stay bit-identical:
    test_txt2img_resumed_from_any_step_is_bit_identical)."""
    use_scheduler("tiny-xl", scheduler)
    spec = make_spec(steps=5, seed=3, width=128, height=128)
    _, checkpoints = _run_with_snapshots(own_registry, spec, "tiny-xl")
    latents_bytes = checkpoints[3].snapshot.latents.numel() * 4
    for step in (2, 3, 4):
        state = checkpoints[step].snapshot.scheduler_state
        history = [t for t in state["model_outputs"] if t is not None]
        assert len(history) == 1, f"step {step}: {len(history)} model outputs stored"
        tensors = 1 + len(history) + (1 if state.get("sample") is not None else 0)
        size = len(encode(checkpoints[step]))
        assert size < tensors * latents_bytes + 16 * 1024, f"step {step}: {size} bytes"
