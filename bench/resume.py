"""Resume: pipeline seconds lost per preemption when a job resumes from a checkpoint, versus
restarting it from step 0 (what every other queue does), and what periodic checkpoints cost.

A 50-step job on the tiny SD model (CPU here, so "GPU-seconds" are CPU-seconds) is
preempted at several steps. For each point, in the same round:
- restart (reference): the work done before the preemption is lost, i.e. the time of the
  interrupted run (the job then runs again in full);
- resume: the interrupted run writes a checkpoint at the preemption step (encode + store
  write, on the loop's thread, as a drain does), then a second run loads it and finishes;
  lost = the write + what the resumed run spends before its first step beyond one step's
  time (read and check the checkpoint, `from_pipe`, prompt encoding). Both are measured
  inside single runs, so machine noise between runs does not enter them.
Periodic checkpoints: the uninterrupted job with a checkpoint every 5 steps (captured in the
step callback, written on the background thread, as a worker does), against the same job
without; the overhead is the difference over the job's time (noisy), and the time the loop
itself was blocked (capture and hand-off, median x count) over the job's time. The default interval (30 s)
takes far fewer checkpoints than this, so the figure is an upper bound.

Also reported: the checkpoint's size and write time for this job, and the size of an SDXL
1024x1024 checkpoint (1 image, float32 latents) with DPM-Solver++ 2M after two steps: the
real scheduler steps latents of that shape (random model outputs stand in for the UNet's;
the size does not depend on their values) and its state is captured as a worker does.
Medians over rounds; `GENJOB_BENCH_QUICK=1` runs one round.
Real components: the real pipeline loaded with `from_pretrained`, the real checkpoint format
and a filesystem result store in a temporary folder. Last line: the JSON result.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from diffusers import DPMSolverMultistepScheduler

from genjob.jobspec import GenerationJobSpec
from genjob.queue import ClaimedJob
from genjob.result_store import FilesystemResultStore
from genjob.settings import ModelConfig, WorkerSettings
from genjob_worker.checkpoint import Checkpoint, decode, encode
from genjob_worker.checkpointer import Checkpointer, CheckpointTarget
from genjob_worker.denoise_state import DenoiseSnapshot, StepTracker, scheduler_state
from genjob_worker.generate import StopGeneration, run_generation
from genjob_worker.models import ModelRegistry
from genjob_worker.tiny_model import build_tiny_pipeline
from tests.support.worker_harness import TEST_TORCH_THREADS

QUICK = os.environ.get("GENJOB_BENCH_QUICK") == "1"
ROUNDS = 1 if QUICK else 3
STEPS = 50
POINTS = [5, 15, 25, 35, 45]
PERIODIC_EVERY = 5
SPEC = GenerationJobSpec(
    tier="free", model="tiny", prompt="a lighthouse", width=64, height=64, steps=STEPS, seed=3
)


def _job(lease: str) -> ClaimedJob:
    return ClaimedJob(
        id="bench", tier="free", lease=lease, spec=SPEC.to_wire(), attempts=0, max_attempts=3,
        enqueued_at_ms=0, meta={},
    )  # fmt: skip


def _full(registry: ModelRegistry) -> float:
    started = time.perf_counter()
    run_generation(registry, SPEC, model_name="tiny", seed=3)
    return time.perf_counter() - started


def _interrupted(registry: ModelRegistry, checkpointer: Checkpointer, point: int) -> tuple[float, float, str]:
    """Run until `point` and write its checkpoint there: (seconds to reach `point`, which a
    restart loses; the write's seconds; the checkpoint's reference)."""
    tracker = StepTracker()
    written: list[tuple[float, float, str]] = []
    started = time.perf_counter()

    def on_step(step: int, total: int) -> None:
        if step == point:
            reached = time.perf_counter() - started
            target = CheckpointTarget(_job(str(point)), "tiny", tracker.fingerprint(), 3)
            ref = checkpointer.write(target, tracker.capture()).ref
            written.append((reached, time.perf_counter() - started - reached, ref))
            raise StopGeneration("Preempted")

    with contextlib.suppress(StopGeneration):
        run_generation(registry, SPEC, model_name="tiny", seed=3, on_step=on_step, tracker=tracker)
    return written[0]


def _resume_overhead(registry: ModelRegistry, store: FilesystemResultStore, ref: str) -> float:
    """Seconds the resumed run spends before its first step beyond one step's time: reading and
    checking the checkpoint, `from_pipe`, the prompt encoding (what a restart does too, so this
    is an upper bound)."""
    marks: list[float] = []
    started = time.perf_counter()
    checkpoint = decode(store.open(ref))
    run_generation(
        registry, SPEC, model_name="tiny", seed=0, resume=checkpoint,
        on_step=lambda step, total: marks.append(time.perf_counter()),
    )  # fmt: skip
    per_step = statistics.median(b - a for a, b in itertools.pairwise(marks)) if len(marks) > 1 else 0
    return marks[0] - started - per_step


def _periodic(registry: ModelRegistry, checkpointer: Checkpointer) -> tuple[float, list[float]]:
    """The full job with a checkpoint every PERIODIC_EVERY steps; (seconds, blocking seconds each)."""
    tracker = StepTracker()
    blocking: list[float] = []

    def on_step(step: int, total: int) -> None:
        if step % PERIODIC_EVERY == 0 and step < total:
            began = time.perf_counter()
            target = CheckpointTarget(_job("periodic"), "tiny", tracker.fingerprint(), 3)
            checkpointer.write_in_background([(target, tracker.capture(), None)])
            blocking.append(time.perf_counter() - began)

    started = time.perf_counter()
    run_generation(registry, SPEC, model_name="tiny", seed=3, on_step=on_step, tracker=tracker)
    checkpointer.flush()
    return time.perf_counter() - started, blocking


def _sdxl_1024_size() -> int:
    noise = torch.Generator().manual_seed(0)
    scheduler = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    scheduler.set_timesteps(STEPS)
    latents = torch.randn(1, 4, 128, 128, generator=noise)
    for t in scheduler.timesteps[:2]:
        latents = scheduler.step(torch.randn(latents.shape, generator=noise), t, latents).prev_sample
    snapshot = DenoiseSnapshot(
        step=2, total=STEPS, position=2, scheduler="DPMSolverMultistepScheduler", latents=latents,
        scheduler_state=scheduler_state(scheduler), generator_states=[torch.Generator().get_state()],
    )  # fmt: skip
    return len(encode(Checkpoint("job", "0" * 64, "sdxl", "0" * 64, 1, 1024, 1024, snapshot)))


def main() -> None:
    torch.set_num_threads(TEST_TORCH_THREADS)
    with tempfile.TemporaryDirectory(prefix="genjob-bench-resume-") as tmp:
        root = Path(tmp)
        build_tiny_pipeline(root / "tiny", "sd")
        registry = ModelRegistry(
            {"tiny": ModelConfig(source=str(root / "tiny"), kind="sd", memory_class="tiny")}
        )
        store = FilesystemResultStore(root / "results")
        checkpointer = Checkpointer(store, WorkerSettings())
        print(
            f"warming up ({STEPS}-step job, tiny SD model, 64x64, {TEST_TORCH_THREADS} torch thread)",
            flush=True,
        )
        _full(registry)
        lost_resume: dict[int, list[float]] = {p: [] for p in POINTS}
        lost_restart: dict[int, list[float]] = {p: [] for p in POINTS}
        fulls, periodic, blocking, writes, sizes = [], [], [], [], []
        for round_no in range(ROUNDS):
            full = _full(registry)
            fulls.append(full)
            seconds, block = _periodic(registry, checkpointer)
            periodic.append(seconds - full)
            blocking += block
            for point in POINTS:
                reached, write, ref = _interrupted(registry, checkpointer, point)
                overhead_s = _resume_overhead(registry, store, ref)
                writes.append(write)
                sizes.append(Path(ref.removeprefix("file://")).stat().st_size)
                lost_restart[point].append(reached)
                lost_resume[point].append(write + overhead_s)
            print(f"round {round_no + 1}/{ROUNDS}: uninterrupted {full:.3f}s", flush=True)
        full = statistics.median(fulls)
        per_point = {
            str(p): {
                "resume_s": round(statistics.median(lost_resume[p]), 4),
                "restart_s": round(statistics.median(lost_restart[p]), 4),
            }
            for p in POINTS
        }
        for point, figures in per_point.items():
            print(f"preempted at step {point}/{STEPS}: lost {figures['resume_s']}s with resume, "
                  f"{figures['restart_s']}s with restart")  # fmt: skip
        value = statistics.mean(statistics.median(lost_resume[p]) for p in POINTS)
        reference = statistics.mean(statistics.median(lost_restart[p]) for p in POINTS)
        overhead = statistics.median(periodic) / full
        checkpoints_per_job = (STEPS - 1) // PERIODIC_EVERY
        blocking_share = statistics.median(blocking) * checkpoints_per_job / full
        print(f"periodic checkpoints every {PERIODIC_EVERY} steps: {overhead:+.1%} of the job's time "
              f"(wall-time difference); loop blocked {blocking_share:.2%} of it")  # fmt: skip
        details = {
            "better": "lower",
            "job": f"tiny SD, 64x64, {STEPS} steps, Euler, CPU",
            "rounds": ROUNDS,
            "uninterrupted_s": round(full, 4),
            "per_preemption_step": per_point,
            "checkpoint_bytes": int(statistics.median(sizes)),
            "checkpoint_write_ms": round(statistics.median(writes) * 1000, 2),
            "sdxl_1024_checkpoint_bytes": _sdxl_1024_size(),
            "periodic_every_steps": PERIODIC_EVERY,
            "periodic_overhead_fraction": round(overhead, 4),
            "periodic_loop_blocked_fraction": round(blocking_share, 4),
            "periodic_blocking_ms_median": round(statistics.median(blocking) * 1000, 3),
            "periodic_blocking_ms_max": round(max(blocking) * 1000, 3),
        }
    print(json.dumps({
        "bench": "resume", "value": round(value, 4), "unit": "s lost per preemption",
        "reference": round(reference, 4), "ratio": round(value / reference, 4) if reference else None,
        "details": details,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
