"""Benchmark: what "acknowledged means durable" costs a submit (Redis WAIT for one replica).

The gateway's local-mode submit (`SubmitScript`, one script per submit) is timed in this
process on the asyncio client, one submit at a time (latency) and 16 at a time
(throughput), in three set-ups on loopback redis-server processes:

- `no_replica`: a lone primary, no WAIT (the default settings);
- `replica_no_wait`: the primary has a replica, submits do not wait for it;
- `replica_wait`: `redis.wait_replicas=1`: the script and WAIT go out in one round trip
  and the answer comes once the replica has the job.

    python -m bench.submit_wait            # about 20 seconds
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from genjob.connect import async_redis_client
from genjob.keys import RedisKeys
from genjob.localredis import RedisServer
from genjob.queue import NewJob
from genjob.settings import GenjobSettings
from genjob_api.backends.local_submit import SubmitScript

SEQUENTIAL = 2000
CONCURRENT = 16
CONCURRENT_TOTAL = 8000
SPEC = {"prompt": "a red fox in the snow", "width": 64, "height": 64, "steps": 2, "tier": "pro"}


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _measure(url: str, wait_replicas: int, label: str) -> dict[str, Any]:
    client = async_redis_client(GenjobSettings(redis={"url": url}))
    submitter = SubmitScript(client, RedisKeys(label), 100_000, 3600, wait_replicas=wait_replicas)
    counter = iter(range(10**9))

    async def one() -> float:
        job = NewJob(id=f"{label}-{next(counter)}", tier="pro", spec=SPEC)
        started = time.perf_counter()
        await submitter.submit(job, "bench")
        return time.perf_counter() - started

    for _ in range(200):  # warm-up: connections, script load
        await one()
    latencies = [await one() for _ in range(SEQUENTIAL)]

    async def lane(n: int) -> None:
        for _ in range(n):
            await one()

    started = time.perf_counter()
    await asyncio.gather(*(lane(CONCURRENT_TOTAL // CONCURRENT) for _ in range(CONCURRENT)))
    rate = CONCURRENT_TOTAL / (time.perf_counter() - started)
    await client.aclose()
    return {
        "p50_ms": round(_p(latencies, 0.5), 3),
        "p99_ms": round(_p(latencies, 0.99), 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
        f"submits_per_s_at_{CONCURRENT}": round(rate),
    }


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="genjob-bench-wait-"))
    primary = RedisServer(tmp / "primary", appendonly=True).start()
    results: dict[str, Any] = {}
    try:
        results["no_replica"] = asyncio.run(_measure(primary.url, 0, "a"))
        replica = RedisServer(tmp / "replica", appendonly=True, replica_of=primary.port).start()
        try:
            results["replica_no_wait"] = asyncio.run(_measure(primary.url, 0, "b"))
            results["replica_wait"] = asyncio.run(_measure(primary.url, 1, "c"))
        finally:
            replica.stop()
    finally:
        primary.stop()
    for name, figures in results.items():
        print(f"{name:<16} {figures}", flush=True)
    value = results["replica_wait"]["p50_ms"]
    reference = results["replica_no_wait"]["p50_ms"]
    print(
        json.dumps(
            {
                "bench": "submit_wait",
                "value": value,
                "unit": "ms p50 per submit (one at a time)",
                "reference": reference,
                "ratio": round(value / reference, 3) if reference else None,
                "details": {"better": "lower", "reference_is": "the same submit without WAIT", **results},
            }
        )
    )


if __name__ == "__main__":
    main()
