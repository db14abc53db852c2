"""Enqueue cost against a long high-priority backlog, read from Redis's own SLOWLOG.

Question: does one enqueue stay cheap inside Redis whatever is already queued? Attack it
answers: a tenant allowed a high priority fills its tier with tens of thousands of jobs,
and every later insert used to walk that backlog inside the enqueue script.

Method: a private redis-server; `--backlog` jobs (default 50,000) of priority 9 queued in
one tier; then `--samples` enqueues each of priority 9, 5 and 0 with SLOWLOG recording every
command (`slowlog-log-slower-than 0`). Reference, same run: the same enqueues into an empty
tier. The value is the slowest enqueue script at the backlog (µs, lower is better); the
details hold p50 and max per priority. The last line printed is the JSON result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import redis

from genjob.keys import RedisKeys
from genjob.localredis import RedisServer
from genjob.queue import JobQueue, NewJob
from genjob.settings import QueueSettings

PRIORITIES = (9, 5, 0)
COMMANDS_PER_ENQUEUE = 16  # the script and the commands it runs each get a SLOWLOG entry


def _enqueue_durations(
    client: redis.Redis, queue: JobQueue, prefix: str, samples: int
) -> dict[int, list[int]]:
    """Enqueue `samples` jobs of each priority; the Redis-side duration (µs) of each script."""
    durations: dict[int, list[int]] = {}
    for priority in PRIORITIES:
        client.slowlog_reset()
        for i in range(samples):
            queue.enqueue(NewJob(id=f"{prefix}-p{priority}-{i}", tier="free", spec={}, priority=priority))
        entries = client.slowlog_get(samples * COMMANDS_PER_ENQUEUE)
        durations[priority] = [int(e["duration"]) for e in entries if e["command"].startswith(b"EVALSHA")]
    return durations


def _summary(durations: dict[int, list[int]]) -> dict[str, dict[str, float]]:
    return {
        f"priority{p}": {"p50_us": statistics.median(d), "max_us": max(d), "samples": len(d)}
        for p, d in durations.items()
    }


def run(backlog: int, samples: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            client = server.client()
            queue = JobQueue(client, RedisKeys("bench"), ["free"], QueueSettings())
            client.config_set("slowlog-max-len", samples * COMMANDS_PER_ENQUEUE)
            client.config_set("slowlog-log-slower-than", 0)
            empty = _enqueue_durations(client, queue, "empty", samples)
            client.flushdb()
            print(f"queueing a backlog of {backlog} priority-9 jobs ...", flush=True)
            for i in range(backlog):
                queue.enqueue(NewJob(id=f"backlog-{i}", tier="free", spec={}, priority=9))
            full = _enqueue_durations(client, queue, "full", samples)
        finally:
            server.stop()
    value = max(max(d) for d in full.values())
    reference = max(max(d) for d in empty.values())
    return {
        "bench": "backlog",
        "value": value,
        "unit": "us",
        "reference": reference,
        "ratio": round(value / reference, 2),
        "details": {
            "better": "lower",
            "backlog": backlog,
            "at_backlog": _summary(full),
            "empty_queue": _summary(empty),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    result = run(args.backlog, args.samples)
    for name, row in result["details"]["at_backlog"].items():
        print(f"{name}: p50 {row['p50_us']} us, max {row['max_us']} us at a backlog of {args.backlog}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
