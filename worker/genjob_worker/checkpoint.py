"""Denoising checkpoints: the versioned file format, and what may be resumed from one.

A checkpoint is one job's `DenoiseSnapshot` plus what binds it to that job. File layout:

    b"GENJOBCK"  (8 bytes)  magic
    uint16 BE               FORMAT_VERSION
    32 bytes                sha256 of the body
    body                    a safetensors file (no pickle): the tensors `latents`,
                            `generator.<i>` (uint8 RNG states), `state.<name>` and
                            `state.<name>.<j>` (scheduler state), and in its metadata
                            `genjob` = JSON of the header below

Header: job id, sha256 of the job's spec (canonical JSON), model name and fingerprint
(`ModelRegistry.fingerprint`: source, kind, dtype, variant and scheduler), scheduler class,
step/total/position, seed, width/height (the size actually run, after an OOM downscale),
the scheduler's non-tensor state values, and the tensors kept in channels-last layout.

`decode` refuses (CheckpointRefusedError) a file that is truncated or corrupted (magic,
version, checksum, safetensors parse, header fields); `Checkpoint.check_for` refuses one
that belongs to another job, spec, model or scheduler. The worker then starts the job from
step 0 and says why in a `warning` event: never a crash, never a wrong image.

Size: the latents (4 x H/8 x W/8 per image: 256 KiB for SDXL 1024x1024 in float32, half in
float16), what a multistep solver's next steps still read of its history (one more latent for
DPM-Solver++ and DEIS, whose oldest entry is left out: `denoise_state`; three for UniPC), 5 KiB
per image of generator state and about 1 KiB of header. Measured for SDXL 1024x1024, one
image, float32: Euler 268 KB, DPM-Solver++ 2M 530 KB, UniPC 1.05 MB; float16 (a GPU) halves
each. Tensors are stored raw: lossless compression (zlib, byte-shuffled) saves only 14-20% of
float32 latents for 10-40 ms of CPU, and storing float32 latents as float16 would change the
continued image.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from genjob.errors import GenjobError
from genjob_worker.denoise_state import DenoiseSnapshot, StateValue

MAGIC = b"GENJOBCK"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">8sH32s")
MAX_CHECKPOINT_BYTES = 256 * 1024 * 1024


class CheckpointRefusedError(GenjobError, ValueError):
    """A checkpoint that must not be resumed from; the job starts over from step 0."""


def spec_digest(spec: dict[str, Any]) -> str:
    """sha256 of a job's spec as the queue holds it (canonical JSON)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Checkpoint:
    """One job's denoising state and what it belongs to."""

    job_id: str
    spec_sha256: str
    model: str
    model_fingerprint: str
    seed: int
    width: int
    height: int
    snapshot: DenoiseSnapshot

    def check_for(self, *, job_id: str, spec_sha256: str, model: str) -> None:
        """Raise CheckpointRefusedError unless this checkpoint belongs to that job and model
        (the model's fingerprint is checked against the pipeline that continues it)."""
        if self.job_id != job_id:
            raise CheckpointRefusedError(f"checkpoint belongs to job {self.job_id!r}, not {job_id!r}")
        if self.spec_sha256 != spec_sha256:
            raise CheckpointRefusedError("the job's spec changed since the checkpoint was written")
        if self.model != model:
            raise CheckpointRefusedError(
                f"checkpoint was written by model {self.model!r}, the job runs {model!r}"
            )
        snap = self.snapshot
        if not 0 < snap.step <= snap.total:
            raise CheckpointRefusedError(f"checkpoint step {snap.step} is outside 1..{snap.total}")
        images, size = len(snap.generator_states), (self.height // 8, self.width // 8)
        if (
            snap.latents.dim() != 4
            or snap.latents.shape[0] != images
            or tuple(snap.latents.shape[2:]) != size
        ):
            raise CheckpointRefusedError(
                f"checkpoint latents {tuple(snap.latents.shape)} do not fit {images} image(s) "
                f"of {self.width}x{self.height}"
            )


def encode(checkpoint: Checkpoint) -> bytes:
    """The checkpoint file's bytes (see the module docstring)."""
    snap = checkpoint.snapshot
    tensors: dict[str, torch.Tensor] = {"latents": snap.latents}
    for i, state in enumerate(snap.generator_states):
        tensors[f"generator.{i}"] = state
    values: dict[str, Any] = {}
    for name, value in snap.scheduler_state.items():
        values[name] = _split(f"state.{name}", value, tensors)
    header = {
        "job": checkpoint.job_id,
        "spec_sha256": checkpoint.spec_sha256,
        "model": checkpoint.model,
        "model_fingerprint": checkpoint.model_fingerprint,
        "seed": checkpoint.seed,
        "width": checkpoint.width,
        "height": checkpoint.height,
        "step": snap.step,
        "total": snap.total,
        "position": snap.position,
        "scheduler": snap.scheduler,
        "images": len(snap.generator_states),
        "state": values,
        "channels_last": sorted(name for name, t in tensors.items() if _is_channels_last(t)),
    }
    tensors = _unshared({name: tensor.contiguous() for name, tensor in tensors.items()})
    body = save_safetensors(tensors, metadata={"genjob": json.dumps(header, separators=(",", ":"))})
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, hashlib.sha256(body).digest()) + body


def decode(data: bytes) -> Checkpoint:
    """Parse and verify a checkpoint file; CheckpointRefusedError says what is wrong."""
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointRefusedError(f"checkpoint of {len(data)} bytes is larger than {MAX_CHECKPOINT_BYTES}")
    if len(data) < _PREFIX.size:
        raise CheckpointRefusedError(f"checkpoint is truncated ({len(data)} bytes)")
    magic, version, digest = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointRefusedError("not a genjob checkpoint (bad magic)")
    if version != FORMAT_VERSION:
        raise CheckpointRefusedError(
            f"checkpoint format version {version}; this worker reads {FORMAT_VERSION}"
        )
    body = data[_PREFIX.size :]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointRefusedError("checkpoint is corrupted or truncated (checksum mismatch)")
    try:
        tensors = load_safetensors(body)
        header = json.loads(_metadata(body)["genjob"])
        for name in header.get("channels_last", []):
            tensors[name] = tensors[name].contiguous(memory_format=torch.channels_last)
        images = int(header["images"])
        snapshot = DenoiseSnapshot(
            step=int(header["step"]),
            total=int(header["total"]),
            position=int(header["position"]),
            scheduler=str(header["scheduler"]),
            latents=tensors["latents"],
            scheduler_state={k: _join(v, tensors) for k, v in dict(header["state"]).items()},
            generator_states=[tensors[f"generator.{i}"] for i in range(images)],
        )
        return Checkpoint(
            job_id=str(header["job"]),
            spec_sha256=str(header["spec_sha256"]),
            model=str(header["model"]),
            model_fingerprint=str(header["model_fingerprint"]),
            seed=int(header["seed"]),
            width=int(header["width"]),
            height=int(header["height"]),
            snapshot=snapshot,
        )
    except (SafetensorError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointRefusedError(f"checkpoint content is invalid: {type(exc).__name__}: {exc}") from None


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (a solver may keep the latents object in
    its history); give each its own copy."""
    seen: set[int] = set()
    out = {}
    for name, tensor in tensors.items():
        pointer = tensor.untyped_storage().data_ptr()
        out[name] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return out


def _is_channels_last(tensor: torch.Tensor) -> bool:
    """img2img latents come from the VAE encoder in channels-last layout; the UNet's results
    depend on the layout in the last bits, so the file keeps it (safetensors stores contiguous)."""
    return (
        tensor.dim() == 4
        and not tensor.is_contiguous()
        and tensor.is_contiguous(memory_format=torch.channels_last)
    )


def _metadata(body: bytes) -> dict[str, str]:
    (length,) = struct.unpack_from("<Q", body)
    meta = json.loads(body[8 : 8 + length])["__metadata__"]
    return dict(meta)


# Scheduler state values in the header: tensors become {"t": name}, tuples {"tuple": [...]},
# numpy arrays {"np": name}; lists, None and scalars stay as they are.
def _split(name: str, value: StateValue, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[name] = value
        return {"t": name}
    if hasattr(value, "__array__") and not isinstance(value, (list, tuple)):
        tensors[name] = torch.from_numpy(value.copy())
        return {"np": name}
    if isinstance(value, tuple):
        return {"tuple": [_split(f"{name}.{j}", v, tensors) for j, v in enumerate(value)]}
    if isinstance(value, list):
        return [_split(f"{name}.{j}", v, tensors) for j, v in enumerate(value)]
    return value


def _join(value: Any, tensors: dict[str, torch.Tensor]) -> StateValue:
    if isinstance(value, dict):
        if "t" in value:
            return tensors[value["t"]]
        if "np" in value:
            return tensors[value["np"]].numpy()
        if "tuple" in value:
            return tuple(_join(v, tensors) for v in value["tuple"])
        raise ValueError(f"unknown state value {sorted(value)}")
    if isinstance(value, list):
        return [_join(v, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"unknown state value of type {type(value).__name__}")
