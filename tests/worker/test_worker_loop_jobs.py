"""The worker loop in-process, on the real tiny pipeline and a real redis-server: what each
kind of job ends as (success, seeds, unknown model, invalid spec, OOM, batching)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from genjob.jobspec import GenerationJobSpec
from genjob.queue import JobState, NewJob
from genjob.settings import GenjobSettings
from genjob_worker.generate import GenerationOutput, StepCallback, run_generation
from genjob_worker.models import ModelRegistry
from tests.support.worker_harness import InProcessWorker, enqueue_job


@pytest.fixture
def loop_settings(make_loop_settings: Callable[..., GenjobSettings]) -> GenjobSettings:
    return make_loop_settings(
        heartbeat_interval_seconds=0.2,
    )


def read_png(uri: str) -> tuple[bytes, Image.Image]:
    data = Path(urlparse(uri).path).read_bytes()
    return data, Image.open(io.BytesIO(data))


def test_job_stores_a_png_of_the_right_size_and_completes(
    loop_settings: GenjobSettings, registry: ModelRegistry
) -> None:
    """Ensures a job ends succeeded with a stored PNG of the spec's size, its sha256 and the seed used."""
    worker = InProcessWorker(loop_settings, registry)
    enqueue_job(worker.queue, "job-1", width=64, height=96, seed=42)
    assert worker.loop.claim_and_run() == 1
    record = worker.queue.get("job-1")
    assert record is not None and record.state == JobState.SUCCEEDED
    assert record.result is not None
    assert record.result["seed"] == 42 and record.result["model"] == "tiny"
    [image] = record.result["images"]
    data, png = read_png(image["uri"])
    assert png.format == "PNG" and png.size == (64, 96)
    assert image["sha256"] == hashlib.sha256(data).hexdigest()
    assert (image["width"], image["height"]) == (64, 96)
    assert record.gpu_seconds > 0
    assert worker.count("succeeded") == 1


def test_same_seed_same_image_and_missing_seed_is_recorded(
    loop_settings: GenjobSettings, registry: ModelRegistry
) -> None:
    """Ensures a seed reproduces the image through the loop, and a job without one records the seed used."""
    worker = InProcessWorker(loop_settings, registry)
    for job_id in ("a", "b"):
        enqueue_job(worker.queue, job_id, seed=7)
        worker.loop.claim_and_run()
    enqueue_job(worker.queue, "c")
    worker.loop.claim_and_run()
    a, b, c = (worker.queue.get(j) for j in ("a", "b", "c"))
    assert a and b and c and a.result and b.result and c.result
    assert a.result["images"][0]["sha256"] == b.result["images"][0]["sha256"]
    assert isinstance(c.result["seed"], int)
    enqueue_job(worker.queue, "d", seed=c.result["seed"])
    worker.loop.claim_and_run()
    d = worker.queue.get("d")
    assert d and d.result and d.result["images"][0]["sha256"] == c.result["images"][0]["sha256"]


def test_unknown_model_fails_without_retry(loop_settings: GenjobSettings, registry: ModelRegistry) -> None:
    """Ensures a job naming a model the worker does not serve fails with ModelNotFound, not retried."""
    worker = InProcessWorker(loop_settings, registry)
    enqueue_job(worker.queue, "lost", model="no-such-model", max_attempts=3)
    worker.loop.claim_and_run()
    record = worker.queue.get("lost")
    assert record is not None and record.state == JobState.FAILED
    assert record.reason == "ModelNotFound" and "no-such-model" in (record.message or "")
    assert worker.queue.dead_letters("free") == ["lost"]
    assert not worker.breaker.consecutive_failures  # the job's fault, not the worker's


def test_invalid_spec_fails_without_retry(loop_settings: GenjobSettings, registry: ModelRegistry) -> None:
    """Ensures a claimed spec that does not validate fails with InvalidSpec and a message naming the field."""
    worker = InProcessWorker(loop_settings, registry)
    spec = {"tier": "free", "model": "tiny", "prompt": "x", "width": 65, "height": 64}
    worker.queue.enqueue(NewJob(id="bad", tier="free", spec=spec, max_attempts=3))
    worker.loop.claim_and_run()
    record = worker.queue.get("bad")
    assert record is not None and record.state == JobState.FAILED
    assert record.reason == "InvalidSpec" and "width" in (record.message or "")


def oom_once(times: int) -> Any:
    """A `run_generation` that raises a CUDA out-of-memory error on its first `times` calls."""
    calls: list[tuple[int, int] | None] = []

    def run(*args: Any, **kwargs: Any) -> GenerationOutput:
        calls.append(kwargs.get("size"))
        if len(calls) <= times:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return run_generation(*args, **kwargs)

    run.calls = calls
    return run


def test_oom_is_retried_downscaled_when_allowed(
    loop_settings: GenjobSettings, registry: ModelRegistry
) -> None:
    """Ensures an injected OOM leads to one retry at 0.75x and a success marked downscaled."""
    run = oom_once(1)
    worker = InProcessWorker(loop_settings, registry, run=run)
    enqueue_job(worker.queue, "big", width=128, height=128, allow_downscale=True)
    worker.loop.claim_and_run()
    record = worker.queue.get("big")
    assert record is not None and record.state == JobState.SUCCEEDED and record.result
    assert record.result["downscaled"] is True
    assert (record.result["images"][0]["width"], record.result["images"][0]["height"]) == (96, 96)
    assert run.calls == [(128, 128), (96, 96)]


def test_oom_fails_when_downscaling_is_not_allowed(
    loop_settings: GenjobSettings, registry: ModelRegistry
) -> None:
    """Ensures an OOM without allowDownscale fails the job with OutOfMemory, not retried."""
    worker = InProcessWorker(loop_settings, registry, run=oom_once(5))
    enqueue_job(worker.queue, "big", width=128, height=128, max_attempts=3)
    worker.loop.claim_and_run()
    record = worker.queue.get("big")
    assert record is not None and record.state == JobState.FAILED
    assert record.reason == "OutOfMemory" and worker.queue.dead_letters("free") == ["big"]
    assert worker.breaker.consecutive_failures == 1  # an OOM is the worker's fault: it counts
    # Counted with its reason: the input of the chart's GPU OOM alert.
    labels = {"tier": "free", "model": "tiny", "outcome": "failed", "reason": "OutOfMemory"}
    assert worker.metrics.registry.get_sample_value("genjob_worker_jobs_total", labels) == 1


def test_img2img_from_a_stored_result(loop_settings: GenjobSettings, registry: ModelRegistry) -> None:
    """Ensures an img2img job whose initImage is a result URI of the store runs through the loop
    and stores an image of its own size, different from its source."""
    worker = InProcessWorker(loop_settings, registry)
    enqueue_job(worker.queue, "source", seed=3)
    worker.loop.claim_and_run()
    source = worker.queue.get("source")
    assert source and source.result
    source_image = source.result["images"][0]
    enqueue_job(
        worker.queue, "edit", init_image=source_image["uri"], strength=0.5, width=64, height=96, seed=3
    )
    worker.loop.claim_and_run()
    edit = worker.queue.get("edit")
    assert edit is not None and edit.state == JobState.SUCCEEDED and edit.result
    [image] = edit.result["images"]
    assert (image["width"], image["height"]) == (64, 96)
    assert image["sha256"] != source_image["sha256"]


def test_foreign_init_image_fails_with_invalid_spec(
    loop_settings: GenjobSettings, registry: ModelRegistry
) -> None:
    """Ensures an initImage that is neither in the store, allow-listed nor inline fails the job with
    InvalidSpec (not retried) and a message saying why."""
    worker = InProcessWorker(loop_settings, registry)
    enqueue_job(worker.queue, "foreign", init_image="https://example.com/cat.png", max_attempts=3)
    worker.loop.claim_and_run()
    record = worker.queue.get("foreign")
    assert record is not None and record.state == JobState.FAILED and record.reason == "InvalidSpec"
    assert "example.com" in (record.message or "") and record.attempts == 1


def test_a_result_of_another_tenant_is_refused_as_init_image(
    loop_settings: GenjobSettings, registry: ModelRegistry
) -> None:
    """Attack: a tenant that learns another tenant's result URI (content-addressed: known from
    the image itself) uses it as its initImage. A result is an init image only for jobs of the
    tenant whose job stored it; the others fail InvalidSpec at once, without reading it."""
    worker = InProcessWorker(loop_settings, registry)
    enqueue_job(worker.queue, "victim", seed=3, meta={"tenant": "acme"})
    worker.loop.claim_and_run()
    victim = worker.queue.get("victim")
    assert victim is not None and victim.result is not None
    uri = victim.result["images"][0]["uri"]
    enqueue_job(worker.queue, "thief", init_image=uri, strength=0.5, seed=3, meta={"tenant": "globex"})
    enqueue_job(worker.queue, "untenanted", init_image=uri, strength=0.5, seed=3)
    enqueue_job(worker.queue, "own", init_image=uri, strength=0.5, seed=3, meta={"tenant": "acme"})
    for _ in range(3):
        worker.loop.claim_and_run()
    for job_id in ("thief", "untenanted"):
        record = worker.queue.get(job_id)
        assert record is not None and record.state == JobState.FAILED and record.reason == "InvalidSpec"
        assert record.attempts == 1 and "another tenant" in (record.message or "")
    own = worker.queue.get("own")
    assert own is not None and own.state == JobState.SUCCEEDED


class SpyGenerator:
    """Counts pipeline calls and the number of jobs in each, delegating to the real runtime."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def generate(
        self,
        specs: Sequence[GenerationJobSpec],
        *,
        model_name: str,
        seeds: Sequence[int],
        on_step: StepCallback,
        **options: Any,
    ) -> list[GenerationOutput]:
        self.calls.append(len(specs))
        return self.inner.generate(specs, model_name=model_name, seeds=seeds, on_step=on_step, **options)


def test_four_compatible_jobs_run_as_one_call(loop_settings: GenjobSettings, registry: ModelRegistry) -> None:
    """Ensures batch_size=4 claims 4 compatible jobs, runs one pipeline call and completes each with
    its own image, equal to the image of the same job run alone."""
    settings = loop_settings.model_copy(
        update={"worker": loop_settings.worker.model_copy(update={"batch_size": 4})}
    )
    plain = InProcessWorker(settings, registry)
    spy = SpyGenerator(plain.generator)
    worker = InProcessWorker(settings, registry, generator=spy)
    for i in range(4):
        enqueue_job(worker.queue, f"b{i}", prompt=f"prompt {i}", seed=100 + i)
    assert worker.loop.claim_and_run() == 4
    assert spy.calls == [4]
    records = [worker.queue.get(f"b{i}") for i in range(4)]
    assert all(r is not None and r.state == JobState.SUCCEEDED and r.result for r in records)
    shas = {r.result["images"][0]["sha256"] for r in records if r and r.result}
    assert len(shas) == 4
    assert [r.result["seed"] for r in records if r and r.result] == [100, 101, 102, 103]
    # The batched image of b2 equals b2 run alone (compare pixels: float noise may differ by 1).
    enqueue_job(worker.queue, "alone", prompt="prompt 2", seed=102)
    assert worker.loop.claim_and_run() == 1
    alone = worker.queue.get("alone")
    assert alone and alone.result and records[2] and records[2].result
    a = np.asarray(read_png(alone.result["images"][0]["uri"])[1].convert("RGB"), dtype=np.int16)
    b = np.asarray(read_png(records[2].result["images"][0]["uri"])[1].convert("RGB"), dtype=np.int16)
    assert int(np.abs(a - b).max()) <= 2
