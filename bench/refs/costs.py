"""Where a genjob job's time goes: per-call costs next to the raw commands, one client.

Each line times one kind of call in a tight loop (medians of several rounds), so the gap
between genjob and the raw loop splits into: the round trip itself (PING), packing a
script call's keys and arguments in redis-py (EVALSHA of `return 1` with enqueue's 14
keys and arguments), running the script on the server (the enqueue script with prebuilt
arguments), and JobQueue's own Python (JobQueue.enqueue).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from genjob.queue import JobQueue, NewJob

ROUNDS = 5


def per_call_us(fn: Callable[[int], object], calls: int) -> float:
    """Median over rounds of the mean microseconds per call."""
    samples = []
    for r in range(ROUNDS):
        started = time.perf_counter()
        for i in range(calls):
            fn(r * calls + i)
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return round(statistics.median(samples), 1)


def measure(queue: JobQueue, tier: str, spec: dict[str, object], calls: int) -> dict[str, float]:
    """Per-call microseconds of raw commands and of genjob's calls, on an empty database."""
    client, k = queue.client, queue.keys
    client.flushdb()
    queue.enqueue(NewJob("costs-load", tier, spec))  # loads the script
    noop_sha = client.script_load("return 1")

    def enqueue_args(i: int) -> list[object]:
        job_id = f"costs-s{i}"
        keys = [k.job(job_id), k.pending(tier), k.queued_at(tier), k.wake(tier), k.events]
        return [*keys, job_id, tier, '{"prompt":"noop"}', 0, 3, "", "{}", k.job_prefix, 100_000]

    def claim_complete(_: int) -> None:
        queue.complete(queue.claim([tier], "costs")[0], {"noop": True})

    def lmove_lrem(_: int) -> None:
        client.lrem("costs:processing", 1, client.lmove("costs:pending", "costs:processing"))

    out = {
        "ping": per_call_us(lambda i: client.ping(), calls),
        "lpush": per_call_us(lambda i: client.lpush("costs:pending", f"raw-{i}"), calls),
        "evalsha_return1_14_args": per_call_us(
            lambda i: client.evalsha(noop_sha, 5, *enqueue_args(i)), calls
        ),
    }
    client.config_resetstat()
    out["evalsha_enqueue_script"] = per_call_us(
        lambda i: client.evalsha(queue.scripts.enqueue.sha, 5, *enqueue_args(i)), calls
    )
    stats = client.info("commandstats")["cmdstat_evalsha"]
    out["enqueue_script_server_us"] = round(float(stats["usec_per_call"]), 1)
    out["jobqueue_enqueue"] = per_call_us(lambda i: queue.enqueue(NewJob(f"costs-q{i}", tier, spec)), calls)
    # Both enqueue lines queued jobs; claim + complete drains as many of them as it times.
    out["jobqueue_claim_complete"] = per_call_us(claim_complete, calls)
    out["lmove_lrem"] = per_call_us(lmove_lrem, calls)
    client.flushdb()
    return out
