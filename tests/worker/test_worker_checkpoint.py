"""The checkpoint file format and its refusals: a damaged, foreign or stale checkpoint is
refused with a CheckpointRefusedError that says why (the worker then starts from step 0)."""

from __future__ import annotations

import struct

import pytest
import torch

from genjob_worker.checkpoint import (
    FORMAT_VERSION,
    MAGIC,
    Checkpoint,
    CheckpointRefusedError,
    decode,
    encode,
    spec_digest,
)
from genjob_worker.denoise_state import DenoiseSnapshot
from genjob_worker.generate import run_generation
from genjob_worker.models import ModelRegistry

SPEC = {"tier": "free", "prompt": "a red bicycle", "steps": 10}


def _checkpoint(**changes: object) -> Checkpoint:
    latents = torch.randn(1, 4, 8, 8)
    snapshot = DenoiseSnapshot(
        step=4, total=10, position=4, scheduler="DPMSolverMultistepScheduler", latents=latents,
        scheduler_state={"_step_index": 4, "lower_order_nums": 2, "model_outputs": [latents, None]},
        generator_states=[torch.Generator().manual_seed(1).get_state()],
    )  # fmt: skip
    fields: dict[str, object] = {
        "job_id": "job-1", "spec_sha256": spec_digest(SPEC), "model": "tiny",
        "model_fingerprint": "f" * 64, "seed": 1, "width": 64, "height": 64, "snapshot": snapshot,
    }  # fmt: skip
    fields.update(changes)
    return Checkpoint(**fields)


def test_round_trip_keeps_every_value() -> None:
    original = _checkpoint()
    back = decode(encode(original))
    back.check_for(job_id="job-1", spec_sha256=spec_digest(SPEC), model="tiny")
    assert torch.equal(back.snapshot.latents, original.snapshot.latents)
    assert back.snapshot.scheduler_state["_step_index"] == 4
    outputs = back.snapshot.scheduler_state["model_outputs"]
    assert torch.equal(outputs[0], original.snapshot.latents) and outputs[1] is None
    assert torch.equal(back.snapshot.generator_states[0], original.snapshot.generator_states[0])


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda data: data[: len(data) // 2], "checksum"),
        (lambda data: data[:20], "truncated"),
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "checksum"),
        (lambda data: b"NOTGENJB" + data[8:], "magic"),
        (lambda data: MAGIC + struct.pack(">H", FORMAT_VERSION + 1) + data[10:], "version"),
        (lambda data: b"", "truncated"),
    ],
)
def test_damaged_files_are_refused(damage: object, why: str) -> None:
    with pytest.raises(CheckpointRefusedError, match=why):
        decode(damage(encode(_checkpoint())))


@pytest.mark.parametrize(
    ("belongs", "why"),
    [
        ({"job_id": "job-2"}, "belongs to job"),
        ({"spec_sha256": spec_digest({**SPEC, "prompt": "a barn"})}, "spec changed"),
        ({"model": "tiny-xl"}, "model"),
        ({"width": 128}, "do not fit"),
    ],
)
def test_foreign_checkpoints_are_refused(belongs: dict[str, object], why: str) -> None:
    checkpoint = decode(encode(_checkpoint(**belongs)))
    with pytest.raises(CheckpointRefusedError, match=why):
        checkpoint.check_for(job_id="job-1", spec_sha256=spec_digest(SPEC), model="tiny")


@pytest.mark.parametrize(
    ("scheduler", "why"),
    [
        ("DPMSolverMultistepScheduler", "the model now uses EulerDiscreteScheduler"),
        ("EulerDiscreteScheduler", "another build"),
    ],
)
def test_a_checkpoint_of_another_pipeline_is_refused_before_running(
    registry: ModelRegistry, make_spec: object, scheduler: str, why: str
) -> None:
    checkpoint = _checkpoint()
    checkpoint.snapshot.scheduler = scheduler
    spec = make_spec(steps=10, seed=1)
    with pytest.raises(CheckpointRefusedError, match=why):
        run_generation(registry, spec, model_name="tiny", seed=1, resume=checkpoint)
