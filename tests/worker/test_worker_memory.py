"""GPU memory protection: estimates, OOM detection, the downscale retry and the circuit breaker.

There is no GPU here: out-of-memory errors are injected at the pipeline seam by a provider
whose pipelines raise torch's real `torch.cuda.OutOfMemoryError` for calls above a pixel
budget and otherwise run the real tiny pipeline.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from genjob.errors import GenjobError
from genjob.jobspec import Reason
from genjob_worker.memory import (
    CircuitBreaker,
    OutOfMemoryError,
    downscaled_size,
    estimate_vram_bytes,
    fits,
    generate_with_oom_protection,
    is_out_of_memory,
)
from genjob_worker.models import ModelRegistry


class OomAbove:
    """A pipeline wrapper that runs out of memory for images larger than `max_pixels`."""

    def __init__(self, pipe: Any, max_pixels: int) -> None:
        self.pipe = pipe
        self.max_pixels = max_pixels
        self.calls: list[tuple[int, int]] = []

    def __call__(self, **kwargs: Any) -> Any:
        size = (kwargs["width"], kwargs["height"])
        self.calls.append(size)
        if size[0] * size[1] > self.max_pixels:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.pipe(**kwargs)


class OomProvider:
    """A PipelineProvider handing out OomAbove wrappers around the registry's real pipelines."""

    def __init__(self, registry: ModelRegistry, max_pixels: int) -> None:
        self.registry = registry
        self.max_pixels = max_pixels
        self.wrappers: list[OomAbove] = []

    def get(self, name: str) -> OomAbove:
        self.wrappers.append(OomAbove(self.registry.get(name), self.max_pixels))
        return self.wrappers[-1]

    def get_img2img(self, name: str) -> Any:
        raise NotImplementedError

    @property
    def calls(self) -> list[tuple[int, int]]:
        return [call for wrapper in self.wrappers for call in wrapper.calls]


def test_oom_with_allow_downscale_retries_smaller(registry: ModelRegistry, make_spec) -> None:
    provider = OomProvider(registry, max_pixels=128 * 128 - 1)
    spec = make_spec(width=128, height=128, allow_downscale=True, num_images=2)
    output = generate_with_oom_protection(provider, spec, model_name="tiny", memory_class="tiny", seed=1)
    assert output.downscaled is True
    assert (output.width, output.height) == (96, 96)
    assert [image.size for image in output.images] == [(96, 96), (96, 96)]
    assert provider.calls == [(128, 128), (96, 96)]


def test_oom_without_allow_downscale_fails(registry: ModelRegistry, make_spec) -> None:
    provider = OomProvider(registry, max_pixels=64 * 64)
    spec = make_spec(width=128, height=128)
    with pytest.raises(OutOfMemoryError) as info:
        generate_with_oom_protection(provider, spec, model_name="tiny", memory_class="sd15", seed=1)
    assert isinstance(info.value, GenjobError) and info.value.reason is Reason.OUT_OF_MEMORY
    assert info.value.estimate_bytes == estimate_vram_bytes("sd15", 128, 128, 1)
    assert "CUDA out of memory" in str(info.value)
    assert provider.calls == [(128, 128)]


def test_oom_twice_fails_after_one_retry(registry: ModelRegistry, make_spec) -> None:
    provider = OomProvider(registry, max_pixels=64 * 64 - 1)
    spec = make_spec(width=128, height=128, allow_downscale=True)
    with pytest.raises(OutOfMemoryError, match="also after downscaling"):
        generate_with_oom_protection(provider, spec, model_name="tiny", memory_class="tiny", seed=1)
    assert provider.calls == [(128, 128), (96, 96)]


def test_no_oom_runs_once_at_full_size(registry: ModelRegistry, make_spec) -> None:
    provider = OomProvider(registry, max_pixels=10**9)
    output = generate_with_oom_protection(
        provider, make_spec(allow_downscale=True), model_name="tiny", memory_class="tiny", seed=1
    )
    assert output.downscaled is False and provider.calls == [(64, 64)]


def test_other_errors_are_not_retried(registry: ModelRegistry, make_spec) -> None:
    class Broken(OomProvider):
        def get(self, name: str) -> Any:
            raise RuntimeError("some other failure")

    with pytest.raises(RuntimeError, match="some other failure"):
        generate_with_oom_protection(
            Broken(registry, 0),
            make_spec(allow_downscale=True),
            model_name="tiny",
            memory_class="tiny",
            seed=1,
        )


def test_preflight_goes_straight_to_the_smaller_size_or_fails(registry: ModelRegistry, make_spec) -> None:
    """With known free memory, a job that cannot fit never starts at the full size."""
    full = estimate_vram_bytes("sd15", 128, 128, 1)
    small = estimate_vram_bytes("sd15", 96, 96, 1)
    free = int((full + small) / 2 * 1.1)  # fits 96x96 (with margin) but not 128x128
    provider = OomProvider(registry, max_pixels=10**9)
    spec = make_spec(width=128, height=128, allow_downscale=True)
    output = generate_with_oom_protection(
        provider, spec, model_name="tiny", memory_class="sd15", seed=1, free_bytes=free
    )
    assert output.downscaled and provider.calls == [(96, 96)]
    with pytest.raises(OutOfMemoryError):
        generate_with_oom_protection(
            provider,
            make_spec(width=128, height=128),
            model_name="tiny",
            memory_class="sd15",
            seed=1,
            free_bytes=free,
        )
    assert provider.calls == [(96, 96)]


def test_is_out_of_memory() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("boom"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(MemoryError())


def test_estimate_is_monotonic_in_resolution_and_batch() -> None:
    for memory_class in ("tiny", "sd15", "sd21", "sdxl"):
        sizes = [(512, 512), (512, 768), (768, 768), (1024, 1024)]
        by_size = [estimate_vram_bytes(memory_class, w, h, 1) for w, h in sizes]
        assert by_size == sorted(by_size) and len(set(by_size)) == len(by_size)
        by_batch = [estimate_vram_bytes(memory_class, 512, 512, b) for b in (1, 2, 4)]
        assert by_batch == sorted(by_batch) and len(set(by_batch)) == 3
    assert estimate_vram_bytes("sdxl", 1024, 1024, 1) > estimate_vram_bytes("sd15", 1024, 1024, 1)
    assert estimate_vram_bytes("sd15", 512, 512, 1, "float32") == 2 * estimate_vram_bytes("sd15", 512, 512, 1)
    assert 3e9 < estimate_vram_bytes("sd15", 512, 512, 1) < 4e9
    with pytest.raises(ValueError, match="unknown memory class"):
        estimate_vram_bytes("sd3", 512, 512, 1)


def test_fits_keeps_a_margin() -> None:
    assert fits(1000, None)
    assert fits(1000, 1100) and not fits(1000, 1099)


def test_downscaled_size() -> None:
    assert downscaled_size(512, 512) == (384, 384)
    assert downscaled_size(1000, 72) == (744, 64)
    assert downscaled_size(64, 64) == (64, 64)


def test_circuit_breaker() -> None:
    breaker = CircuitBreaker(max_consecutive_failures=2)
    assert not breaker.is_open
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert not breaker.is_open
    breaker.record_failure()
    assert breaker.is_open
    breaker.record_success()
    assert not breaker.is_open
    with pytest.raises(ValueError):
        CircuitBreaker(0)
