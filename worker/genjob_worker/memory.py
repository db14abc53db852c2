"""GPU memory protection: estimate a job's need, free caches, retry once smaller on OOM.

Estimate (bytes) of one pipeline call, for fp16 weights and activations:

    estimate = WEIGHTS[class] + (width/8) * (height/8) * batch * ACTIVATION_PER_LATENT_PIXEL[class]

and twice that for float32. `batch` is the number of images (classifier-free guidance's
doubling is folded into the per-pixel factor). Attention is assumed memory-efficient
(PyTorch SDPA), so activations grow linearly with latent pixels.

    memory_class  weights (fp16)  activations per latent pixel per image
    tiny          0               4 KiB
    sd15          2.2 GB          300 KiB   (512x512, 1 image: ~3.4 GB)
    sd21          2.6 GB          300 KiB   (768x768, 1 image: ~5.4 GB)
    sdxl          6.9 GB          320 KiB   (1024x1024, 1 image: ~12.3 GB)

The factors are first estimates from published peak-VRAM figures, to calibrate on real
GPUs; attention slicing, VAE tiling and CPU offload lower the real need. `fits` keeps a
10% margin for allocator fragmentation.

On an out-of-memory error `generate_with_oom_protection` frees memory and, when the spec
allows downscaling, retries once at 0.75x each side (multiples of 8, at least 64) and
marks the output `downscaled`; otherwise, or when the retry runs out of memory too, it
raises `OutOfMemoryError`.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

import torch
from PIL import Image

from genjob.errors import GenjobError
from genjob.jobspec import GenerationJobSpec, Reason
from genjob_worker.checkpoint import Checkpoint
from genjob_worker.denoise_state import StepTracker
from genjob_worker.generate import GenerationOutput, PipelineProvider, run_generation

GB = 1000**3
KIB = 1024
WEIGHTS_FP16_BYTES = {"tiny": 0, "sd15": int(2.2 * GB), "sd21": int(2.6 * GB), "sdxl": int(6.9 * GB)}
ACTIVATION_PER_LATENT_PIXEL_FP16 = {"tiny": 4 * KIB, "sd15": 300 * KIB, "sd21": 300 * KIB, "sdxl": 320 * KIB}
DTYPE_FACTOR = {"float16": 1, "bfloat16": 1, "float32": 2}
FIT_MARGIN = 0.10
DOWNSCALE_FACTOR = 0.75
MIN_SIDE = 64


class OutOfMemoryError(GenjobError, MemoryError):
    """The job needs more GPU memory than is free, even after the allowed downscale retry."""

    reason = Reason.OUT_OF_MEMORY

    def __init__(self, estimate_bytes: int, width: int, height: int, detail: str) -> None:
        super().__init__(
            f"out of GPU memory at {width}x{height} (estimated need {estimate_bytes / GB:.2f} GB): {detail}"
        )
        self.estimate_bytes = estimate_bytes
        self.width = width
        self.height = height


def estimate_vram_bytes(
    memory_class: str, width: int, height: int, batch: int, dtype: str = "float16"
) -> int:
    """Estimated peak GPU memory of one pipeline call (see the module docstring)."""
    if memory_class not in WEIGHTS_FP16_BYTES:
        raise ValueError(f"unknown memory class {memory_class!r}; known: {', '.join(WEIGHTS_FP16_BYTES)}")
    latent_pixels = (width // 8) * (height // 8)
    fp16 = (
        WEIGHTS_FP16_BYTES[memory_class]
        + latent_pixels * batch * ACTIVATION_PER_LATENT_PIXEL_FP16[memory_class]
    )
    return fp16 * DTYPE_FACTOR[dtype]


def fits(estimate_bytes: int, free_bytes: int | None) -> bool:
    """True when the estimate plus a 10% margin fits; always True when free memory is unknown (CPU)."""
    return free_bytes is None or estimate_bytes * (1 + FIT_MARGIN) <= free_bytes


def free_vram_bytes(device: str) -> int | None:
    """Free memory of the CUDA device, or None on CPU."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def free_memory() -> None:
    """Collect garbage and return cached CUDA blocks to the driver."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's CUDA OOM error or a RuntimeError saying "CUDA out of memory"."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc)


def downscaled_size(width: int, height: int) -> tuple[int, int]:
    """0.75x each side, rounded down to a multiple of 8, at least 64."""
    width, height = (max(MIN_SIDE, int(side * DOWNSCALE_FACTOR) // 8 * 8) for side in (width, height))
    return width, height


def generate_with_oom_protection(
    pipe_provider: PipelineProvider,
    spec: GenerationJobSpec,
    *,
    model_name: str,
    memory_class: str,
    seed: int,
    on_step: Callable[[int, int], None] = lambda step, total: None,
    device: str = "cpu",
    init_image: Image.Image | None = None,
    free_bytes: int | None = None,
    dtype: str = "float16",
    run: Callable[..., GenerationOutput] | None = None,
    tracker: StepTracker | None = None,
    resume: Checkpoint | None = None,
) -> GenerationOutput:
    """`run_generation` with a memory check before and one downscaled retry after an OOM.

    `free_bytes` is the device's free memory (`free_vram_bytes(device)`; None skips the
    check). When the estimate does not fit, the job goes straight to the downscaled size if
    allowed and that fits, else fails without running. `run` defaults to `run_generation`.
    With `resume`, the first attempt continues the checkpoint at its size; a retry after an
    OOM starts over.
    """
    run = run or run_generation
    size = (spec.width, spec.height)
    smaller = downscaled_size(*size)

    def estimate(at: tuple[int, int]) -> int:
        return estimate_vram_bytes(memory_class, at[0], at[1], spec.num_images, dtype)

    resume_size = (resume.width, resume.height) if resume is not None else None

    def attempt(at: tuple[int, int]) -> GenerationOutput:
        extra = {"tracker": tracker, "resume": resume} if at == resume_size else {"tracker": tracker}
        output = run(
            pipe_provider, spec, model_name=model_name, seed=seed, on_step=on_step,
            device=device, init_image=init_image, size=at, **extra,
        )  # fmt: skip
        output.downscaled = at != size
        return output

    can_downscale = spec.allow_downscale and smaller != size
    if resume_size is not None:
        size_to_try = resume_size
    elif not fits(estimate(size), free_bytes):
        free_memory()
        if not (can_downscale and fits(estimate(smaller), free_bytes)):
            raise OutOfMemoryError(estimate(size), *size, f"only {free_bytes} bytes free")
        size_to_try = smaller
    else:
        size_to_try = size
    detail = ""
    try:
        return attempt(size_to_try)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # Freed outside the except block, so the traceback's frames (and their tensors) are gone.
    free_memory()
    if size_to_try == smaller or not can_downscale:
        raise OutOfMemoryError(estimate(size_to_try), *size_to_try, detail)
    try:
        return attempt(smaller)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    free_memory()
    raise OutOfMemoryError(estimate(smaller), *smaller, f"also after downscaling: {detail}")


class CircuitBreaker:
    """Opens (worker goes not-ready) after `max_consecutive_failures` failures in a row."""

    def __init__(self, max_consecutive_failures: int) -> None:
        if max_consecutive_failures < 1:
            raise ValueError("max_consecutive_failures must be at least 1")
        self.max_consecutive_failures = max_consecutive_failures
        self.consecutive_failures = 0

    def record_success(self) -> None:
        self.consecutive_failures = 0

    def record_failure(self) -> None:
        self.consecutive_failures += 1

    @property
    def is_open(self) -> bool:
        return self.consecutive_failures >= self.max_consecutive_failures
