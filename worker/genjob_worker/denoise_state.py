"""The state of a running denoising loop: capture it at a step boundary, continue from it.

A diffusers pipeline's loop is `for i, t in enumerate(timesteps)`: the UNet predicts, the
scheduler steps, then `callback_on_step_end` sees the new `latents`. Everything the rest of
the loop depends on is then:
- the latents (`callback_kwargs["latents"]`);
- the scheduler's mutable state: its position (`_step_index`, or a counter for the schedulers
  that find their place from the timestep) and a multistep solver's history (previous model
  outputs, the last sample...). It is captured as the attributes that differ from a freshly
  `set_timesteps`-ed scheduler of the same class and config, so the schedule itself (sigmas,
  timesteps, betas) is never stored, only what the steps so far changed;
- the random generators' states (ancestral and SDE schedulers draw noise at each step);
- the position in the schedule: steps done so far (for img2img, after the strength's skip).

To continue, the pipeline is called again with `latents=` (the captured ones) and the
restored generators, through `from_pipe`, with a scheduler built by `resumed_scheduler`
(set on the new pipeline once built: a pipeline's `__init__` may rewrite the config of the
scheduler it is given, SD 1.x's turns DDIM's and DDPM's `clip_sample` off): a
subclass of the model's scheduler class whose `set_timesteps` computes the full schedule,
restores the captured attributes and hands the pipeline only the timesteps still to run.
Its first `scale_model_input`/`step` points `timesteps` back at the full schedule (solvers
such as DPM-Solver++ compare the step index with its length), and its `init_noise_sigma`
is 1 so the pipeline does not scale the given latents again. img2img jobs continue through
the text-to-image pipeline: once the loop runs, the init image lives in the latents.

On CPU the continued image is bit-identical to the uninterrupted one for every scheduler
in `RESUMABLE_SCHEDULERS` (tests/worker/test_worker_resume_exact.py); other schedulers are
not checkpointed (their jobs restart from step 0, as before).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

# Bit-exact on CPU with SD 1.x and SDXL (tests/worker/test_worker_resume_exact.py).
RESUMABLE_SCHEDULERS = frozenset(
    {
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "DPMSolverMultistepScheduler",
        "DPMSolverSinglestepScheduler",
        "DEISMultistepScheduler",
        "UniPCMultistepScheduler",
        "PNDMScheduler",
        "HeunDiscreteScheduler",
        "KDPM2DiscreteScheduler",
        "DDIMScheduler",
        "DDPMScheduler",
    }
)
# Solvers whose `step` shifts this history list (`model_outputs[i] = model_outputs[i + 1]`)
# before it reads any of it: at a step boundary the oldest entry is never read again, so it
# is not stored (None takes its place). A left-out entry that is read would fail the exactness
# tests (None in the solver's arithmetic). UniPC is not here: its corrector reads the history
# before the shift.
_HISTORY_SHIFTED_BEFORE_READ = {
    "DPMSolverMultistepScheduler": "model_outputs",
    "DPMSolverSinglestepScheduler": "model_outputs",
    "DEISMultistepScheduler": "model_outputs",
}
_NOT_STATE = {"_internal_dict"}
_OWN_PREFIX = "_genjob_"
StateValue = Any  # tensors, numpy arrays, lists/tuples of them, None and plain scalars


class NotResumableError(ValueError):
    """The pipeline's scheduler (or a value in its state) cannot be checkpointed."""


def _same(a: StateValue, b: StateValue) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and torch.equal(a.cpu(), b.cpu())
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


def _copy(value: StateValue, device: str | torch.device | None = None) -> StateValue:
    if isinstance(value, torch.Tensor):
        return value.detach().to(device or value.device, copy=True)
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v, device) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise NotResumableError(f"scheduler state holds a {type(value).__name__}, which genjob cannot checkpoint")


def _fresh(scheduler: Any) -> Any:
    """A new scheduler of the same class and config with the same schedule and nothing run."""
    fresh = type(scheduler).from_config(scheduler.config)
    fresh.set_timesteps(scheduler.num_inference_steps, device=scheduler.timesteps.device)
    return fresh


def scheduler_state(scheduler: Any, fresh: Any | None = None) -> dict[str, StateValue]:
    """The attributes the steps so far changed, copied to the CPU (see the module docstring)."""
    name = _base_class(type(scheduler)).__name__
    if name not in RESUMABLE_SCHEDULERS:
        raise NotResumableError(f"{name} is not one of the resumable schedulers")
    reference = vars(fresh if fresh is not None else _fresh(scheduler))
    missing = object()
    shifted = _HISTORY_SHIFTED_BEFORE_READ.get(name)
    return {
        key: _copy([None, *value[1:]] if key == shifted and isinstance(value, list) else value, "cpu")
        for key, value in vars(scheduler).items()
        if key not in _NOT_STATE
        and not key.startswith(_OWN_PREFIX)
        and not _same(value, reference.get(key, missing))
    }


def _is_state_name(cls: type, name: str) -> bool:
    """A plain instance attribute name (never a dunder, a method, a property or our own)."""
    return (
        name.isidentifier()
        and not name.startswith("__")
        and not name.startswith(_OWN_PREFIX)
        and name not in _NOT_STATE
        and not callable(getattr(cls, name, None))
        and not isinstance(getattr(cls, name, None), property)
    )


def _base_class(cls: type) -> type:
    return getattr(cls, "_genjob_base", cls)


def resumed_scheduler(scheduler: Any, position: int, state: dict[str, StateValue]) -> Any:
    """A scheduler like `scheduler` (same class and config) that continues at `position`
    with `state` restored, for one pipeline call (see the module docstring)."""
    base = _base_class(type(scheduler))
    if base.__name__ not in RESUMABLE_SCHEDULERS:
        raise NotResumableError(f"{base.__name__} is not one of the resumable schedulers")
    instance = _resumed_class(base).from_config(scheduler.config)
    refused = sorted(name for name in state if not _is_state_name(base, name))
    if refused:
        raise NotResumableError(f"{base.__name__} has no state attribute(s) {refused}")
    instance._genjob_pending = (position, state)
    return instance


@functools.cache
def _resumed_class(base: Any) -> Any:
    class Resumed(base):  # type: ignore[misc]  # a subclass of the scheduler class met at run time
        _genjob_base = base

        def set_timesteps(self, *args: Any, **kwargs: Any) -> None:
            base.set_timesteps(self, *args, **kwargs)
            pending = getattr(self, "_genjob_pending", None)
            if pending is None:
                return
            self._genjob_pending = None
            position, state = pending
            full = cast("Any", self).timesteps  # set by base.set_timesteps (an untyped class)
            known = vars(self)
            for key, value in state.items():
                device = known[key].device if isinstance(known.get(key), torch.Tensor) else full.device
                setattr(self, key, _copy(value, device))
            if not 0 <= position <= len(full):
                raise NotResumableError(
                    f"position {position} is outside the schedule of {len(full)} timesteps"
                )
            self._genjob_full = full
            self.timesteps = full[position:]

        @property
        def init_noise_sigma(self) -> float:
            return 1.0  # the given latents are already the loop's latents

        @init_noise_sigma.setter
        def init_noise_sigma(self, value: float) -> None:
            self._genjob_init_noise_sigma = value  # the base class sets it in __init__

        def _full_schedule(self) -> None:
            full = getattr(self, "_genjob_full", None)
            if full is not None:
                self.timesteps, self._genjob_full = full, None

        @functools.wraps(base.scale_model_input)
        def scale_model_input(self, *args: Any, **kwargs: Any) -> Any:
            self._full_schedule()
            return base.scale_model_input(self, *args, **kwargs)

        @functools.wraps(base.step)  # keeps the signature: pipelines pass `generator`/`eta` by it
        def step(self, *args: Any, **kwargs: Any) -> Any:
            self._full_schedule()
            return base.step(self, *args, **kwargs)

    Resumed.__name__ = Resumed.__qualname__ = base.__name__
    return Resumed


@dataclass
class DenoiseSnapshot:
    """The loop's state after `step` of `total` steps, on the CPU (all images of the call)."""

    step: int
    total: int
    position: int  # index of the next timestep in the scheduler's full schedule
    scheduler: str
    latents: torch.Tensor
    scheduler_state: dict[str, StateValue]
    generator_states: list[torch.Tensor]

    def images(self, start: int, count: int) -> DenoiseSnapshot:
        """The part of one job of a batched call: its latents, generators and state rows."""
        batch = self.latents.shape[0]

        def rows(value: StateValue) -> StateValue:
            if isinstance(value, torch.Tensor) and value.shape == self.latents.shape:
                return value[start : start + count].clone()
            if isinstance(value, (list, tuple)):
                return type(value)(rows(v) for v in value)
            return value

        if start == 0 and count == batch:
            return self
        return DenoiseSnapshot(
            step=self.step,
            total=self.total,
            position=self.position,
            scheduler=self.scheduler,
            latents=self.latents[start : start + count].clone(),
            scheduler_state={k: rows(v) for k, v in self.scheduler_state.items()},
            generator_states=self.generator_states[start : start + count],
        )


@dataclass
class StepTracker:
    """Follows one pipeline call step by step, so a snapshot can be taken at any boundary.

    `observe` (from the step callback) only keeps references; `capture` copies. `offset` and
    `total` come from the snapshot a resumed call continues, so steps count over the whole job.
    """

    generators: Sequence[torch.Generator] = ()
    offset: int = 0
    total: int | None = None
    step: int = 0
    _pipe: Any = None
    _latents: torch.Tensor | None = None
    _index: int = 0
    _fresh: Any = field(default=None, repr=False)
    _fingerprint: str | None = None

    def start(self, generators: Sequence[torch.Generator], resume: DenoiseSnapshot | None) -> None:
        self.generators = list(generators)
        self.offset = resume.step if resume else 0
        self.total = resume.total if resume else None
        self.step, self._pipe, self._latents, self._fresh = self.offset, None, None, None
        self._fingerprint = None

    def observe(self, pipe: Any, index: int, latents: torch.Tensor) -> tuple[int, int]:
        """Record the step boundary after loop iteration `index`; returns (step, total)."""
        self._pipe, self._index, self._latents = pipe, index, latents
        self.step = self.offset + index + 1
        if self.total is None:
            self.total = int(pipe.num_timesteps)
        return self.step, self.total

    def fingerprint(self) -> str:
        """`pipeline_fingerprint` of the pipeline this call runs (computed once per call)."""
        if self._pipe is None:
            raise NotResumableError("no step has run yet")
        if self._fingerprint is None:
            self._fingerprint = pipeline_fingerprint(self._pipe)
        return self._fingerprint

    def capture(self) -> DenoiseSnapshot:
        """Copy the state at the last observed boundary (raises NotResumableError)."""
        if self._pipe is None or self._latents is None or self.total is None:
            raise NotResumableError("no step has run yet")
        scheduler = self._pipe.scheduler
        if self._fresh is None:
            self._fresh = _fresh(scheduler)
        full = getattr(scheduler, "_genjob_full", None)
        length = len(full if full is not None else scheduler.timesteps)
        return DenoiseSnapshot(
            step=self.step,
            total=self.total,
            position=length - int(self._pipe.num_timesteps) + self._index + 1,
            scheduler=_base_class(type(scheduler)).__name__,
            latents=self._latents.detach().to("cpu", copy=True),
            scheduler_state=scheduler_state(scheduler, self._fresh),
            generator_states=[g.get_state() for g in self.generators],
        )


def pipeline_fingerprint(pipe: Any) -> str:
    """sha256 of what decides a pipeline's denoising: the UNet's and VAE's configs (with the
    folder they were loaded from), the scheduler class and config, and the dtype. Two
    workers loading the same model folder agree; another model, scheduler or dtype differs.
    (Weights are not hashed: a folder whose weights changed in place is not detected.)"""
    parts = {
        "unet": dict(pipe.unet.config),
        "vae": dict(pipe.vae.config),
        "scheduler": [_base_class(type(pipe.scheduler)).__name__, dict(pipe.scheduler.config)],
        "dtype": str(pipe.unet.dtype),
    }
    canonical = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def restored_generators(states: Sequence[torch.Tensor]) -> list[torch.Generator]:
    """CPU generators continuing from captured states."""
    generators = []
    for state in states:
        generator = torch.Generator(device="cpu")
        generator.set_state(state)
        generators.append(generator)
    return generators
