"""Queue throughput: no-op jobs/s through genjob's JobQueue (enqueue -> claim -> complete).

Question: how fast does the queue protocol move work, with 1 and with 4 consumer processes,
how long does a claim take (p50/p99), and how many Redis round trips does a job cost?
References, measured in the same run against the same private redis-server:
- `raw`: a redis-py loop, LPUSH + LMOVE + LREM, one client (bench/refs/ref_raw.py);
- the same no-op workload through rq (SimpleWorker), arq, Celery (solo pool) and Dramatiq
  (1 process x 1 thread, and x 4 threads), each with its Redis broker and default settings;
  and, outside the targets, arq polling every 10 ms and Dramatiq (1 thread) prefetching 64,
  since their defaults (0.5 s polls; prefetch 2 plus backoff sleeps) cap them, not Redis.
  Their pins conflict with the project's, so each runs in its own venv under
  `.venv/bench-refs/<name>/` (made on first run, see bench/refs/venvs.py).

Method, the same for every system: a producer enqueues the timed jobs while no worker runs
(`enqueue_s`), then the consumers drain them (`drain_s`, from the go signal to the last
completion); jobs/s = jobs / (enqueue_s + drain_s), the rate of one job through all three
steps. Every run is preceded by warm-up jobs; rounds interleave the systems so they share
the machine's noise; medians of the rounds are reported. genjob (1 consumer) and the raw
loop run twice per round, back to back as A-B-B-A: `details.ratio_paired_median` is the
median of those per-round ratios, less sensitive to other load than value/reference.
genjob's consumer processes claim one job at a time (`JobQueue.claim(max_jobs=1)`) and
complete it, like the worker loop; a third pool of one process claims up to 8 at a time (a
worker with batch_size=8) to show what the claim's round trip costs
(`details.consumers_1_batch8`). bench/refs/costs.py then splits one job's cost into round
trip, argument packing, server script time and JobQueue's Python (`details.per_call_us`).

Round trips are counted in the client: every `send_packed_command` of the connection is one
round trip (a pipeline is one). Redis commands per job are read on the server (INFO stats
`total_commands_processed` deltas; commands run inside scripts count too).

    python -m bench.queue                     # about 3 minutes (+1 minute for the venvs, once)
    python -m bench.queue --quick             # a few seconds once the venvs exist
    python -m bench.queue --quick --skip-refs # genjob and the raw loop only (the test)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis

from bench.refs import costs
from bench.refs.venvs import DRIVERS, REFERENCES, ensure_venv
from genjob.connect import job_queue
from genjob.localredis import RedisServer
from genjob.queue import JobQueue, JobState, NewJob
from genjob.settings import GenjobSettings

TIER = "free"
SPEC = {"prompt": "noop"}
RESULT = {"noop": True}
BATCH = 8  # the batch variant: claim(max_jobs=8), as a worker with batch_size=8 does


@dataclass(frozen=True)
class Sizes:
    """How much work one run does."""

    jobs: int  # timed jobs per round: genjob and the raw loop (fast: a larger sample)
    ref_jobs: int  # timed jobs per round: the reference libraries (up to 20x slower)
    warmup: int  # untimed jobs before each round
    rounds: int
    cost_calls: int  # calls per round of each line of bench/refs/costs.py


FULL = Sizes(jobs=2000, ref_jobs=1000, warmup=150, rounds=5, cost_calls=1000)
QUICK = Sizes(jobs=100, ref_jobs=100, warmup=20, rounds=1, cost_calls=50)


def say(message: str) -> None:
    print(message, flush=True)


class CountingConnection(redis.Connection):
    """A redis-py connection that counts round trips: one per packed send (a pipeline is one)."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)


def counting_queue(url: str) -> JobQueue:
    settings = GenjobSettings(redis={"url": url})
    pool = redis.ConnectionPool.from_url(url, decode_responses=True, connection_class=CountingConnection)
    return job_queue(settings, redis.Redis(connection_pool=pool))


# -- genjob consumers (child processes) ------------------------------------------------------


def consumer_main(url: str, name: str, max_jobs: int, conn: Connection) -> None:
    """Drain the tier on each go signal: claim up to `max_jobs`, complete them, until the list is empty."""
    queue = counting_queue(url)
    queue.client.ping()
    while conn.recv():
        sends = CountingConnection.sends
        claims: list[float] = []
        completed = 0
        while True:
            started = time.perf_counter()
            jobs = queue.claim([TIER], name, max_jobs=max_jobs)
            if not jobs:
                break
            claims.append(time.perf_counter() - started)
            for job in jobs:
                if not queue.complete(job, RESULT).applied:
                    raise RuntimeError(f"completion of {job.id} was not applied")
                completed += 1
        end = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes on Linux
        conn.send(
            {
                "completed": completed,
                "end": end,
                "claims": claims,
                "round_trips": CountingConnection.sends - sends,
            }
        )


class ConsumerPool:
    """N consumer processes that stay up (and warm) across rounds."""

    def __init__(self, url: str, size: int, max_jobs: int = 1) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs = []
        for i in range(size):
            here, there = ctx.Pipe()
            proc = ctx.Process(
                target=consumer_main, args=(url, f"bench-{size}-{max_jobs}-{i}", max_jobs, there), daemon=True
            )
            proc.start()
            self.pipes.append(here)
            self.procs.append(proc)

    def drain(self) -> tuple[float, list[dict[str, Any]]]:
        """Tell every consumer to go; the go time and their reports."""
        go = time.perf_counter()
        for pipe in self.pipes:
            pipe.send(True)
        return go, [pipe.recv() for pipe in self.pipes]

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(False)
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


def server_commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def genjob_round(queue: JobQueue, pool: ConsumerPool, tag: str, sizes: Sizes) -> dict[str, Any]:
    """Warm-up jobs, then the timed jobs: enqueue all, then drain with the pool; verified after."""
    queue.client.flushdb()
    for i in range(sizes.warmup):
        queue.enqueue(NewJob(f"{tag}-warm-{i}", TIER, SPEC))
    pool.drain()
    ids = [f"{tag}-{i}" for i in range(sizes.jobs)]
    commands, sends = server_commands(queue.client), CountingConnection.sends
    started = time.perf_counter()
    for job_id in ids:
        queue.enqueue(NewJob(job_id, TIER, SPEC))
    enqueue_s = time.perf_counter() - started
    enqueue_trips = CountingConnection.sends - sends
    go, reports = pool.drain()
    drain_s = max(r["end"] for r in reports) - go
    commands = server_commands(queue.client) - commands - 1  # less this INFO itself
    succeeded = sum(
        1 for record in queue.get_many(ids) if record is not None and record.state == JobState.SUCCEEDED
    )
    completed = sum(r["completed"] for r in reports)
    if succeeded != sizes.jobs or completed != sizes.jobs:
        raise RuntimeError(
            f"genjob round {tag}: {completed} completed, {succeeded} of {sizes.jobs} succeeded"
        )
    return {
        "jobs": sizes.jobs,
        "jobs_s": sizes.jobs / (enqueue_s + drain_s),
        "enqueue_s": enqueue_s,
        "drain_s": drain_s,
        "completed": completed,
        "succeeded": succeeded,
        "claims": [c for r in reports for c in r["claims"]],
        "round_trips": enqueue_trips + sum(r["round_trips"] for r in reports),
        "commands_per_job": commands / sizes.jobs,
    }


# -- references (driver subprocesses) ----------------------------------------------------------


@dataclass(frozen=True)
class RefRun:
    """One reference configuration: which venv, which driver, which flags."""

    key: str
    python: Path
    script: Path
    extra: tuple[str, ...] = ()


def ref_round(run: RefRun, url: str, client: redis.Redis, sizes: Sizes) -> dict[str, Any]:
    jobs = sizes.jobs if run.key == "raw" else sizes.ref_jobs
    client.flushdb()
    commands = server_commands(client)
    cmd = [
        str(run.python),
        str(run.script),
        "--url",
        url,
        "--jobs",
        str(jobs),
        "--warmup",
        str(sizes.warmup),
        *run.extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=DRIVERS)
    commands = server_commands(client) - commands - 1
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{run.key} driver failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(lines[-1])
    if result["completed"] != jobs:
        raise RuntimeError(f"{run.key}: {result['completed']} of {jobs} jobs completed")
    result["jobs_s"] = jobs / (result["enqueue_s"] + result["drain_s"])
    # Over warm-up and timed jobs, and including the worker's start-up: an upper bound.
    result["commands_per_job"] = commands / (jobs + sizes.warmup)
    return result


def reference_runs(skip: bool) -> list[RefRun]:
    runs = [RefRun("raw", Path(sys.executable), DRIVERS / "ref_raw.py")]
    if skip:
        return runs
    pythons = {name: ensure_venv(ref, say) for name, ref in REFERENCES.items()}
    runs += [
        RefRun("rq", pythons["rq"], REFERENCES["rq"].script),
        RefRun("arq", pythons["arq"], REFERENCES["arq"].script),
        RefRun("celery", pythons["celery"], REFERENCES["celery"].script),
        RefRun("dramatiq_1", pythons["dramatiq"], REFERENCES["dramatiq"].script, ("--threads", "1")),
        RefRun("dramatiq_4", pythons["dramatiq"], REFERENCES["dramatiq"].script, ("--threads", "4")),
        # Not in the targets: the same libraries with their throughput knob turned (see the drivers).
        RefRun("arq_tuned", pythons["arq"], REFERENCES["arq"].script, ("--tuned",)),
        RefRun(
            "dramatiq_1_prefetch64",
            pythons["dramatiq"],
            REFERENCES["dramatiq"].script,
            ("--threads", "1", "--tuned"),
        ),
    ]
    return runs


# -- the run -------------------------------------------------------------------------------------


def percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(q * (len(ordered) - 1)))
    return round(ordered[index] * 1000, 3)


def median(values: list[float]) -> float:
    return statistics.median(values)


def run(sizes: Sizes, skip_refs: bool) -> dict[str, Any]:
    runs = reference_runs(skip_refs)
    with tempfile.TemporaryDirectory(prefix="genjob-bench-queue-") as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        pools: dict[str, ConsumerPool] = {}
        try:
            say(
                f"redis-server on {server.url}; {sizes.rounds} round(s) of {sizes.jobs} jobs (genjob, "
                f"raw loop) or {sizes.ref_jobs} jobs (libraries), each after {sizes.warmup} warm-up jobs"
            )
            queue = counting_queue(server.url)
            pools = {
                "genjob_1": ConsumerPool(server.url, 1),
                "genjob_4": ConsumerPool(server.url, 4),
                f"genjob_1_batch{BATCH}": ConsumerPool(server.url, 1, max_jobs=BATCH),
            }
            results: dict[str, list[dict[str, Any]]] = {key: [] for key in [*pools, *(r.key for r in runs)]}
            raw, refs = runs[0], runs[1:]
            for r in range(sizes.rounds):
                say(f"round {r + 1}/{sizes.rounds}")
                # The headline pair back to back, A-B-B-A, so both see the same load on average.
                for i, key in enumerate(["genjob_1", "raw", "raw", "genjob_1"]):
                    if key == "raw":
                        results[key].append(ref_round(raw, server.url, queue.client, sizes))
                    else:
                        results[key].append(genjob_round(queue, pools[key], f"r{r}-{i}-{key}", sizes))
                    say(f"  {key:<11} {results[key][-1]['jobs_s']:8.0f} jobs/s")
                for key, pool in pools.items():
                    if key != "genjob_1":
                        results[key].append(genjob_round(queue, pool, f"r{r}-{key}", sizes))
                        say(f"  {key:<11} {results[key][-1]['jobs_s']:8.0f} jobs/s")
                for ref in refs:
                    results[ref.key].append(ref_round(ref, server.url, queue.client, sizes))
                    say(f"  {ref.key:<11} {results[ref.key][-1]['jobs_s']:8.0f} jobs/s")
            say("per-call costs, one client (microseconds):")
            per_call = costs.measure(queue, TIER, SPEC, sizes.cost_calls)
            for name, us in per_call.items():
                say(f"  {name:<28} {us:8.1f}")
        finally:
            for pool in pools.values():
                pool.close()
            server.stop()
    result = summarize(results, sizes, skip_refs)
    result["details"]["per_call_us"] = per_call
    return result


def paired_ratio(genjob: list[dict[str, Any]], raw: list[dict[str, Any]]) -> float:
    """Median over rounds of genjob's rate / the raw loop's rate, each the mean of its A-B-B-A pair."""
    ratios = []
    for i in range(0, len(genjob), 2):
        ratios.append(
            (genjob[i]["jobs_s"] + genjob[i + 1]["jobs_s"]) / (raw[i]["jobs_s"] + raw[i + 1]["jobs_s"])
        )
    return round(median(ratios), 3)


def summarize(results: dict[str, list[dict[str, Any]]], sizes: Sizes, skip_refs: bool) -> dict[str, Any]:
    rate = {key: round(median([x["jobs_s"] for x in rounds]), 1) for key, rounds in results.items()}
    per_job = {key: round(median([x["commands_per_job"] for x in v]), 2) for key, v in results.items()}
    one, four = results["genjob_1"], results["genjob_4"]
    claims_1 = [c for x in one for c in x["claims"]]
    claims_4 = [c for x in four for c in x["claims"]]
    value, reference = rate["genjob_1"], rate["raw"]
    details: dict[str, Any] = {
        "better": "higher",
        "consumers_4": rate["genjob_4"],
        f"consumers_1_batch{BATCH}": rate[f"genjob_1_batch{BATCH}"],
        **{key: rate.get(key) for key in ("rq", "arq", "celery", "dramatiq_1", "dramatiq_4")},
        "arq_tuned": rate.get("arq_tuned"),
        "dramatiq_1_prefetch64": rate.get("dramatiq_1_prefetch64"),
        "round_trips_per_job": round(median([x["round_trips"] for x in one]) / sizes.jobs, 3),
        "claim_p50_ms": percentile_ms(claims_1, 0.50),
        "claim_p99_ms": percentile_ms(claims_1, 0.99),
        "claim_p50_ms_4": percentile_ms(claims_4, 0.50),
        "claim_p99_ms_4": percentile_ms(claims_4, 0.99),
        "ratio_paired_median": paired_ratio(one, results["raw"]),
        "samples": sizes.rounds,
        "jobs_per_round": sizes.jobs,
        "ref_jobs_per_round": sizes.ref_jobs,
        "warmup_jobs": sizes.warmup,
        "claim_samples": len(claims_1),
        "genjob_jobs_enqueued": sum(
            sizes.jobs for k, v in results.items() if k.startswith("genjob") for _ in v
        ),
        "genjob_jobs_succeeded": sum(
            x["succeeded"] for k, v in results.items() if k.startswith("genjob") for x in v
        ),
        "enqueue_per_s": {
            k: round(median([x["jobs"] / x["enqueue_s"] for x in v]), 1) for k, v in results.items()
        },
        "drain_per_s": {
            k: round(median([x["jobs"] / x["drain_s"] for x in v]), 1) for k, v in results.items()
        },
        "redis_commands_per_job": per_job,
        "skipped_refs": skip_refs,
    }
    if not skip_refs:
        singles = [rate[k] for k in ("rq", "arq", "celery", "dramatiq_1")]
        details["targets_met"] = {
            "half_of_raw": value >= reference / 2,
            "beats_1_worker_refs": all(value > s for s in singles),
            "consumers_4_beats_dramatiq_4": rate["genjob_4"] > rate["dramatiq_4"],
        }
    return {
        "bench": "queue",
        "value": value,
        "unit": "jobs/s",
        "reference": reference,
        "ratio": round(value / reference, 3) if reference else None,
        "details": details,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.queue", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few jobs, one round (CI proves it runs)")
    parser.add_argument("--skip-refs", action="store_true", help="genjob and the raw loop only (no venvs)")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("GENJOB_BENCH_QUICK") == "1"
    result = run(QUICK if quick else FULL, args.skip_refs)
    d = result["details"]
    say(
        f"genjob 1 consumer {result['value']} jobs/s = {result['ratio']} x raw loop ({result['reference']}); "
        f"4 consumers {d['consumers_4']}; {d['round_trips_per_job']} round trips/job; "
        f"claim p50 {d['claim_p50_ms']} ms p99 {d['claim_p99_ms']} ms"
    )
    if "targets_met" in d:
        say(f"targets: {d['targets_met']}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
