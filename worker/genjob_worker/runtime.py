"""The seam between the queue loop and diffusers: `Generator.generate(specs, ...)`.

`DiffusersGenerator` runs one job with `generate_with_oom_protection` (memory estimate,
one downscaled retry when the spec allows) or several compatible txt2img jobs as one
`run_batch` call; a batch that runs out of GPU memory is retried job by job with the same
protection. Errors reach the loop as the runtime raises them: `ModelNotFoundError`,
`InvalidSpecError`, `OutOfMemoryError`, `StopGeneration` (from `on_step`), or anything else.
Tests replace the `run` seam of the OOM protection to inject out-of-memory errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from genjob.jobspec import GenerationJobSpec
from genjob.result_store import ResultStore
from genjob.settings import WorkerSettings
from genjob_worker.checkpoint import Checkpoint
from genjob_worker.denoise_state import StepTracker
from genjob_worker.generate import GenerationOutput, StepCallback, run_batch
from genjob_worker.init_image import resolve_init_image
from genjob_worker.memory import free_memory, free_vram_bytes, generate_with_oom_protection, is_out_of_memory
from genjob_worker.models import ModelRegistry


class Generator(Protocol):
    """Turns compatible specs (one pipeline call) into one output per spec, in order.
    `tracker` follows the call (for checkpoints); `resumes` holds, per spec, the checkpoint
    it continues from (a resumed spec is always alone in its call)."""

    def generate(
        self,
        specs: Sequence[GenerationJobSpec],
        *,
        model_name: str,
        seeds: Sequence[int],
        on_step: StepCallback,
        tracker: StepTracker | None = None,
        resumes: Sequence[Checkpoint | None] | None = None,
        tenants: Sequence[str] | None = None,
    ) -> list[GenerationOutput]: ...


class DiffusersGenerator:
    """The real runtime: the model registry's pipelines, with GPU memory protection."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: ResultStore,
        worker: WorkerSettings,
        *,
        run: Callable[..., GenerationOutput] | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.worker = worker
        self.run = run  # None: generate.run_generation

    def generate(
        self,
        specs: Sequence[GenerationJobSpec],
        *,
        model_name: str,
        seeds: Sequence[int],
        on_step: StepCallback,
        tracker: StepTracker | None = None,
        resumes: Sequence[Checkpoint | None] | None = None,
        tenants: Sequence[str] | None = None,
    ) -> list[GenerationOutput]:
        config = self.registry.config(model_name)  # ModelNotFoundError when not configured
        resumes = resumes or [None] * len(specs)
        tenants = tenants or [""] * len(specs)
        if len(specs) > 1:
            try:
                return run_batch(
                    self.registry, specs, model_name=model_name, seeds=seeds, on_step=on_step, tracker=tracker
                )
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
            free_memory()
        return [
            self._one(
                spec, model_name, config.memory_class, config.dtype, seed, on_step, tracker, resume, tenant
            )
            for spec, seed, resume, tenant in zip(specs, seeds, resumes, tenants, strict=True)
        ]

    def _one(
        self,
        spec: GenerationJobSpec,
        model_name: str,
        memory_class: str,
        dtype: str,
        seed: int,
        on_step: StepCallback,
        tracker: StepTracker | None,
        resume: Checkpoint | None,
        tenant: str,
    ) -> GenerationOutput:
        init_image = None
        if spec.init_image is not None and resume is None:  # a resumed job's image is in its latents
            init_image = resolve_init_image(
                spec.init_image,
                store=self.store,
                max_bytes=self.worker.init_image_max_bytes,
                url_allowlist=self.worker.init_image_url_allowlist,
                allow_private=self.worker.init_image_allow_private,
                width=spec.width,
                height=spec.height,
                tenant=tenant,
            )
        return generate_with_oom_protection(
            self.registry,
            spec,
            model_name=model_name,
            memory_class=memory_class,
            seed=seed,
            on_step=on_step,
            device="cpu",  # random generators on the CPU: a seed reproduces on any worker
            init_image=init_image,
            free_bytes=free_vram_bytes(self.registry.device),
            dtype=dtype,
            run=self.run,
            tracker=tracker,
            resume=resume,
        )
