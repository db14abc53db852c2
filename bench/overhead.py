"""Worker overhead: submit -> stored image wall time minus the same pipeline call made directly.

Question: what does the queue path (enqueue, claim, step callbacks with progress and
heartbeats, PNG encode, result store write, completion) add to a generation on the tiny
model? Reference, measured in the same run on the same machine: `run_generation` on the
same pipeline, called directly in this process.

Samples are pairs (one direct call, then one job through the worker), so both sides see
the same load on a noisy machine; the value is the median of the pair differences. The
details add the median of (wall time - the pipeline time the worker itself recorded), a
less noisy view of the same overhead.

Also: the speed-up of batching, i.e. 4 compatible jobs through a worker with batch_size=4
versus one with batch_size=1: the span from the first claim to the last completion, read
from the job records. Two idle workers serve different tiers (free: batch_size=1, pro:
batch_size=4) and rounds alternate between them, so both see the same machine load; in
each round a "blocker" job (another batch key) keeps the worker busy while the 4 jobs are
queued, so a batching worker finds all 4 at its next claim.

Real components: a private redis-server, real `genjob worker` processes, the tiny model
built into a temporary folder. Every process (this one and the workers) runs torch with one
intra-op thread (`TEST_TORCH_THREADS`), so the processes do not oversubscribe a small shared
machine and both sides compute the same way. `GENJOB_BENCH_QUICK=1` runs a few samples only (CI proves
it runs). The last line printed is the JSON result (see BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import redis
import torch

from genjob.connect import job_queue
from genjob.jobspec import GenerationJobSpec
from genjob.localredis import RedisServer, free_port
from genjob.queue import JobQueue, JobState
from genjob.settings import GenjobSettings, ModelConfig
from genjob_worker.generate import run_generation
from genjob_worker.models import ModelRegistry
from genjob_worker.tiny_model import build_tiny_pipeline
from tests.support.worker_harness import (
    TEST_TORCH_THREADS,
    WorkerProcess,
    enqueue_job,
    wait_for_job,
    worker_environment,
)

QUICK = os.environ.get("GENJOB_BENCH_QUICK") == "1"
SAMPLES = 3 if QUICK else 30
WARMUP = 2 if QUICK else 5
BATCH_ROUNDS = 1 if QUICK else 7
JOB = {"width": 64, "height": 64, "steps": 4, "seed": 1}  # the overhead job
BATCH_JOB = {"width": 64, "height": 64, "steps": 8}  # the 4 batched jobs
PAUSE_SECONDS = 0.05  # lets the other process's compute threads go idle between samples
BLOCKER = {"width": 64, "height": 64, "steps": 40}  # a different batch key: runs alone


def say(message: str) -> None:
    print(message, flush=True)


def median_ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1000, 2)


class DirectPipeline:
    """The same pipeline call as the worker's, made directly in this process."""

    def __init__(self, model_dir: Path) -> None:
        torch.set_num_threads(TEST_TORCH_THREADS)  # as many torch threads as the worker processes
        config = ModelConfig(source=str(model_dir), dtype="float32", memory_class="tiny")
        self.registry = ModelRegistry({"tiny": config})
        self.spec = GenerationJobSpec(tier="free", model="tiny", prompt="a red bicycle", **JOB)

    def __call__(self) -> float:
        started = time.perf_counter()
        run_generation(self.registry, self.spec, model_name="tiny", seed=1)
        return time.perf_counter() - started


def last_event_id(client: redis.Redis, stream: str) -> str:
    entries = client.xrevrange(stream, count=1)
    return entries[0][0] if entries else "0-0"


def submit_and_wait(queue: JobQueue, job_id: str) -> float:
    """Enqueue one job and block on the event stream until it succeeded; the wall time."""
    stream = queue.keys.events
    after = last_event_id(queue.client, stream)
    started = time.perf_counter()
    enqueue_job(queue, job_id, prompt="a red bicycle", **JOB)
    while True:
        for _stream, entries in queue.client.xread({stream: after}, block=30_000) or []:
            for entry_id, fields in entries:
                after = entry_id
                if fields.get("job") == job_id and fields.get("type") in ("succeeded", "failed"):
                    if fields["type"] != "succeeded":
                        raise RuntimeError(f"bench job {job_id} failed: {fields}")
                    return time.perf_counter() - started


def batch_round(queue: JobQueue, tag: str, tier: str) -> float:
    """Seconds from the first claim to the last completion of 4 compatible jobs of `tier`."""
    enqueue_job(queue, f"{tag}-blocker", tier=tier, prompt="blocker", **BLOCKER)
    wait_for_job(queue, f"{tag}-blocker", {JobState.RUNNING})
    ids = [f"{tag}-{i}" for i in range(4)]
    for i, job_id in enumerate(ids):
        enqueue_job(queue, job_id, tier=tier, prompt=f"batched prompt {i}", seed=10 + i, **BATCH_JOB)
    records = [wait_for_job(queue, job_id, timeout=300) for job_id in ids]
    if any(
        r.state != JobState.SUCCEEDED or r.started_at_ms is None or r.finished_at_ms is None for r in records
    ):
        raise RuntimeError(f"batch round {tag} did not succeed: {records}")
    first = min(r.started_at_ms for r in records if r.started_at_ms is not None)
    last = max(r.finished_at_ms for r in records if r.finished_at_ms is not None)
    return (last - first) / 1000


def start_worker(root: Path, redis_url: str, model_dir: Path, batch_size: int, tier: str) -> WorkerProcess:
    env = worker_environment(
        redis_url=redis_url,
        model_dir=model_dir,
        results_dir=root / "results",
        http_port=free_port(),
        batch_size=batch_size,
        tiers=[tier],
        annotate_pod=False,
    )
    env["GENJOB_LOG_LEVEL"] = "WARNING"  # no per-job log lines in the measured path
    worker = WorkerProcess(env, root / f"worker-{tier}-batch{batch_size}.log").start()
    worker.wait_ready()
    return worker


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="genjob-bench-") as tmp:
        root = Path(tmp)
        server = RedisServer(root / "redis").start()
        try:
            say(f"redis-server on {server.url}; building the tiny model")
            model_dir = build_tiny_pipeline(root / "tiny", "sd")
            queue = job_queue(GenjobSettings(redis={"url": server.url}))

            direct_call = DirectPipeline(model_dir)
            say("starting two idle workers: tier free with batch_size=1, tier pro with batch_size=4")
            single_worker = start_worker(root, server.url, model_dir, 1, "free")
            batch_worker = start_worker(root, server.url, model_dir, 4, "pro")
            try:
                for i in range(WARMUP):
                    direct_call()
                    submit_and_wait(queue, f"warm-{i}")
                say(f"{SAMPLES} pairs of (direct pipeline call, job through the worker), {JOB}")
                direct, walls, inner = [], [], []
                for i in range(SAMPLES):  # interleaved, so both sides see the same machine load
                    direct.append(direct_call())
                    time.sleep(PAUSE_SECONDS)
                    walls.append(submit_and_wait(queue, f"job-{i}"))
                    time.sleep(PAUSE_SECONDS)
                    record = queue.get(f"job-{i}")
                    inner.append(walls[-1] - (record.gpu_seconds if record else 0.0))
                say(f"  direct median {median_ms(direct)} ms")
                say(f"  submit -> stored image median {median_ms(walls)} ms")
                say(f"  wall minus the worker's own pipeline time: median {median_ms(inner)} ms")
                say(f"batching: {BATCH_ROUNDS} alternating round(s) of 4 jobs {BATCH_JOB}")
                batch_round(queue, "single-warm", "free")
                batch_round(queue, "batch-warm", "pro")
                single, batched = [], []
                for r in range(BATCH_ROUNDS):
                    single.append(batch_round(queue, f"single{r}", "free"))
                    batched.append(batch_round(queue, f"batch{r}", "pro"))
                say(f"  4 jobs one by one (batch_size=1): median {median_ms(single)} ms")
                say(f"  4 jobs as one call (batch_size=4): median {median_ms(batched)} ms")
            finally:
                single_worker.stop()
                batch_worker.stop()
        finally:
            server.stop()

    direct_ms, wall_ms = median_ms(direct), median_ms(walls)
    overhead = median_ms([w - d for w, d in zip(walls, direct, strict=True)])
    speedup = round(statistics.median(single) / statistics.median(batched), 2)
    say(f"median overhead per job {overhead} ms (direct {direct_ms} ms); batch-4 speed-up x{speedup}")
    print(
        json.dumps(
            {
                "bench": "overhead",
                "value": overhead,
                "unit": "ms",
                "reference": direct_ms,
                "ratio": round(overhead / direct_ms, 3) if direct_ms else None,
                "details": {
                    "better": "lower",
                    "samples": len(walls),
                    "submit_to_image_median_ms": wall_ms,
                    "wall_minus_worker_pipeline_median_ms": median_ms(inner),
                    "job": JOB,
                    "batch4_speedup": speedup,
                    "batch_rounds": BATCH_ROUNDS,
                    "batch_job": BATCH_JOB,
                    "batch1_span_median_ms": median_ms(single),
                    "batch4_span_median_ms": median_ms(batched),
                    "torch_threads": TEST_TORCH_THREADS,
                    "quick": QUICK,
                },
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
