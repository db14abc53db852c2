"""Worker test fixtures: tiny random-weight SD and SDXL models built once per session.

The models are built with `build_tiny_pipeline`, saved as safetensors and loaded back by
`ModelRegistry` through diffusers' `from_pretrained`, exactly like a real model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import torch

from genjob.connect import job_queue
from genjob.jobspec import GenerationJobSpec
from genjob.localredis import RedisServer, free_port
from genjob.queue import JobQueue
from genjob.settings import GenjobSettings, ModelConfig
from genjob_worker.models import ModelRegistry
from genjob_worker.tiny_model import build_tiny_pipeline
from tests.support.worker_harness import TEST_TORCH_THREADS, StartWorker, WorkerProcess, worker_environment


@pytest.fixture(scope="session", autouse=True)
def torch_threads() -> Iterator[int]:
    """One torch thread in the test process, like the worker processes the tests start
    (see TEST_TORCH_THREADS: the default oversubscribes a small shared machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(TEST_TORCH_THREADS)
    yield TEST_TORCH_THREADS
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: build_tiny_pipeline(root / kind, kind) for kind in ("sd", "sdxl")}


@pytest.fixture(scope="session")
def model_configs(tiny_model_dirs: dict[str, Path]) -> dict[str, ModelConfig]:
    return {
        "tiny": ModelConfig(source=str(tiny_model_dirs["sd"]), kind="sd", memory_class="tiny"),
        "tiny-xl": ModelConfig(source=str(tiny_model_dirs["sdxl"]), kind="sdxl", memory_class="tiny"),
    }


@pytest.fixture(scope="session")
def registry(model_configs: dict[str, ModelConfig]) -> ModelRegistry:
    """One registry for the session so each tiny model loads once (CPU, float32)."""
    return ModelRegistry(model_configs, device="cpu", max_loaded=2)


SpecFactory = Callable[..., GenerationJobSpec]


@pytest.fixture
def make_spec() -> SpecFactory:
    """Build small, fast specs (64x64, 2 steps) with field overrides."""

    def make(**overrides: object) -> GenerationJobSpec:
        fields: dict[str, object] = {"tier": "free", "prompt": "a red bicycle", "width": 64, "height": 64}
        fields.update({"steps": 2, **overrides})
        return GenerationJobSpec(**fields)

    return make


@pytest.fixture
def make_loop_settings(
    redis_server: RedisServer, redis_client: redis.Redis, tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> Callable[..., GenjobSettings]:
    """Settings for a worker loop on the tiny SD model, tier `free`, with fast test timings, on an
    emptied Redis (`redis_client` flushes it).

    Keyword arguments override or add worker settings (a test module's own intervals and limits).
    """

    def make(**worker: object) -> GenjobSettings:
        return GenjobSettings(
            redis={"url": redis_server.url},
            results={"path": tmp_path / "results"},
            models={
                "tiny": {"source": str(tiny_model_dirs["sd"]), "dtype": "float32", "memory_class": "tiny"}
            },
            default_model="tiny",
            queue={"retry_backoff_base_seconds": 0.05, "retry_backoff_max_seconds": 0.1},
            worker={"tiers": ["free"], "idle_block_seconds": 0.1, "http_port": 0, **worker},
        )

    return make


@pytest.fixture
def queue(redis_server: RedisServer, redis_client: redis.Redis) -> JobQueue:
    return job_queue(GenjobSettings(redis={"url": redis_server.url}))


@pytest.fixture
def start_worker(
    redis_server: RedisServer, redis_client: redis.Redis, tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> Iterator[StartWorker]:
    """Start worker processes (stopped at teardown); keyword arguments become worker settings."""
    started: list[WorkerProcess] = []

    def start(
        *, queue: dict[str, Any] | None = None, args: tuple[str, ...] = (), ready: bool = True, **worker: Any
    ) -> WorkerProcess:
        env = worker_environment(
            redis_url=redis_server.url,
            model_dir=worker.pop("model_dir", tiny_model_dirs["sd"]),
            results_dir=tmp_path / "results",
            http_port=free_port(),
            queue=queue,
            **{
                "heartbeat_interval_seconds": 0.5,
                "progress_interval_seconds": 0.2,
                "idle_block_seconds": 0.5,  # an idle worker sees SIGTERM within 0.5 s
                **worker,
            },
        )
        process = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log", args).start()
        started.append(process)
        if ready:
            process.wait_ready()
        return process

    yield start
    for process in started:
        process.stop()
