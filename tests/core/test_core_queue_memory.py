"""Redis memory per job: finished records keep only what status and results need, and the
bytes per queued and per finished job stay within the budget docs/redis.md sizes Redis by.

Measured on a real redis-server with `used_memory` (allocator-level, everything included:
the job hash, list and sorted-set entries, and the event streams' entries).
"""

from __future__ import annotations

import base64

import redis

from genjob.keys import RedisKeys
from genjob.queue import JobQueue, JobState, NewJob
from genjob.settings import QueueSettings

# The budget docs/redis.md sizes Redis by (bytes per job, typical 200-character prompt).
QUEUED_BYTES_BUDGET = 2000
FINISHED_BYTES_BUDGET = 4000  # the record kept for the retention, plus its events
JOBS = 500


def typical_spec(i: int) -> dict[str, object]:
    return {
        "tier": "free",
        "model": "sd15",
        "prompt": f"{i} " + "a lighthouse on a cliff in a storm, dramatic light, oil painting " * 3,
        "negativePrompt": "blurry, low quality",
        "width": 512,
        "height": 512,
        "steps": 30,
        "guidanceScale": 7.5,
        "numImages": 1,
        "timeoutSeconds": 600,
        "maxAttempts": 3,
    }


def used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def test_a_finished_record_drops_its_inline_init_image(job_queue: JobQueue) -> None:
    image = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"\0" * 300_000).decode()
    spec = {**typical_spec(0), "initImage": image, "strength": 0.5}
    job_queue.enqueue(NewJob(id="img", tier="free", spec=spec))
    (claimed,) = job_queue.claim(["free"], "w")
    assert claimed.spec["initImage"] == image, "the worker gets the image"
    job_queue.complete(claimed, {"images": ["file:///r/img.png"]})
    record = job_queue.get("img")
    assert record is not None and record.state == JobState.SUCCEEDED
    assert record.spec["initImage"] == "data:,removed-when-finished"
    assert record.spec["prompt"] == spec["prompt"] and record.spec["strength"] == 0.5
    hash_bytes = job_queue.client.memory_usage(RedisKeys("t").job("img"))
    assert hash_bytes is not None and hash_bytes < 4096


def test_bytes_per_queued_and_per_finished_job_stay_within_budget(redis_client: redis.Redis) -> None:
    queue = JobQueue(redis_client, RedisKeys("m"), ["free"], QueueSettings())
    redis_client.flushdb()
    start = used(redis_client)
    for i in range(JOBS):
        queue.enqueue(NewJob(id=f"job-{i}", tier="free", spec=typical_spec(i), max_attempts=3))
    per_queued = (used(redis_client) - start) / JOBS
    for _ in range(JOBS):
        (claimed,) = queue.claim(["free"], "w")
        queue.report_progress(claimed, "w", 15, 30)
        queue.complete(
            claimed, {"images": [f"file:///results/{claimed.id}/0.png"], "seed": 1, "sha256": ["0" * 64]}
        )
    per_finished = (used(redis_client) - start) / JOBS
    print(f"bytes per queued job {per_queued:.0f}, per finished job (with its events) {per_finished:.0f}")
    assert 0 < per_queued < QUEUED_BYTES_BUDGET
    assert per_queued < per_finished < FINISHED_BYTES_BUDGET
