"""Generation on the tiny models: sizes, seeds, numImages, SDXL, step callbacks and batching."""

from __future__ import annotations

import numpy as np
import pytest

from genjob.batching import batch_key
from genjob.jobspec import Reason
from genjob_worker.generate import (
    GenerationOutput,
    StopGeneration,
    choose_seed,
    run_batch,
    run_generation,
)
from genjob_worker.models import ModelRegistry


def _pixels(output: GenerationOutput) -> list[np.ndarray]:
    return [np.asarray(image, dtype=np.int16) for image in output.images]


def test_image_has_the_requested_size(registry: ModelRegistry, make_spec) -> None:
    spec = make_spec(width=96, height=64)
    output = run_generation(registry, spec, model_name="tiny", seed=1)
    assert [image.size for image in output.images] == [(96, 64)]
    assert output.images[0].mode == "RGB"
    assert (output.width, output.height, output.seed, output.downscaled) == (96, 64, 1, False)
    assert output.pipeline_seconds > 0


def test_same_seed_same_pixels_different_seed_different(registry: ModelRegistry, make_spec) -> None:
    spec = make_spec()
    first = _pixels(run_generation(registry, spec, model_name="tiny", seed=7))[0]
    again = _pixels(run_generation(registry, spec, model_name="tiny", seed=7))[0]
    other = _pixels(run_generation(registry, spec, model_name="tiny", seed=8))[0]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_num_images_each_reproducible_on_its_own(registry: ModelRegistry, make_spec) -> None:
    """Image i of a job with seed s equals image 0 of a one-image job with seed s+i."""
    many = run_generation(registry, make_spec(num_images=3), model_name="tiny", seed=100)
    assert len(many.images) == 3
    third = run_generation(registry, make_spec(), model_name="tiny", seed=102)
    assert np.allclose(_pixels(many)[2], _pixels(third)[0], atol=2)
    assert not np.array_equal(_pixels(many)[0], _pixels(many)[1])


def test_sdxl_txt2img(registry: ModelRegistry, make_spec) -> None:
    output = run_generation(
        registry, make_spec(num_images=2, width=64, height=80), model_name="tiny-xl", seed=3
    )
    assert [image.size for image in output.images] == [(64, 80), (64, 80)]


def test_step_callback_sees_every_step(registry: ModelRegistry, make_spec) -> None:
    seen: list[tuple[int, int]] = []
    run_generation(
        registry, make_spec(steps=3), model_name="tiny", seed=1, on_step=lambda s, t: seen.append((s, t))
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_raising_callback_stops_the_pipeline_and_it_stays_usable(registry: ModelRegistry, make_spec) -> None:
    """StopGeneration leaves the pipeline call at a step boundary; the next job is unaffected."""
    seen: list[int] = []

    def stop_at_two(step: int, total: int) -> None:
        seen.append(step)
        if step == 2:
            raise StopGeneration(Reason.CANCELLED)

    spec = make_spec(steps=4)
    before = _pixels(run_generation(registry, spec, model_name="tiny", seed=5))[0]
    with pytest.raises(StopGeneration) as info:
        run_generation(registry, spec, model_name="tiny", seed=5, on_step=stop_at_two)
    assert info.value.reason is Reason.CANCELLED
    assert seen == [1, 2]
    after = _pixels(run_generation(registry, spec, model_name="tiny", seed=5))[0]
    assert np.array_equal(before, after)


def test_choose_seed_keeps_the_spec_seed_or_draws_one(make_spec) -> None:
    assert choose_seed(make_spec(seed=42)) == 42
    drawn = {choose_seed(make_spec()) for _ in range(5)}
    assert len(drawn) > 1 and all(0 <= seed <= 2**32 - 17 for seed in drawn)


def test_run_batch_equals_running_one_by_one(registry: ModelRegistry, make_spec) -> None:
    """Three compatible jobs in one pipeline call give the images each gives alone."""
    specs = [
        make_spec(prompt="a red bicycle"),
        make_spec(prompt="a lighthouse at dusk", num_images=2),
        make_spec(prompt="a bowl of ramen"),
    ]
    seeds = [11, 22, 33]
    batched = run_batch(registry, specs, model_name="tiny", seeds=seeds)
    assert [len(output.images) for output in batched] == [1, 2, 1]
    for spec, seed, output in zip(specs, seeds, batched, strict=True):
        alone = run_generation(registry, spec, model_name="tiny", seed=seed)
        assert output.seed == seed
        for got, want in zip(_pixels(output), _pixels(alone), strict=True):
            assert np.allclose(got, want, atol=2)


def test_batch_key_separates_incompatible_specs(make_spec) -> None:
    base = batch_key(make_spec(), "tiny")
    assert batch_key(make_spec(prompt="other", seed=3), "tiny") == base
    assert batch_key(make_spec(steps=3), "tiny") != base
    assert batch_key(make_spec(), "tiny-xl") != base
    assert batch_key(make_spec(init_image="data:image/png;base64,AA=="), "tiny") is None
    with pytest.raises(ValueError, match="not batch-compatible"):
        run_batch(None, [make_spec(), make_spec(width=128)], model_name="tiny", seeds=[1, 2])
