"""Failover under load: Redis with replicas and Sentinel loses its primary twice; what happens
to the jobs?

Real processes on loopback: a primary with AOF, two replicas, three sentinels
(`redis-server --sentinel`, down-after 1 s); the gateway (`genjob api`, local mode, which
runs the lease reaper) with `redis.wait_replicas=1`; three workers on the tiny model. All
of them find the primary through the sentinels. A steady load submits jobs through the
gateway (each under its own Idempotency-Key, retried with it on 503 or a dropped
connection, as a client should); the primary is killed with SIGKILL twice and restarted as
a replica each time. Then every accepted job is awaited and the event stream is audited.

`run_failover()` returns the figures; tests/api/test_api_failover.py asserts the counts
(none lost, none resurrected, completions and re-executions explained), this module's
`main` prints them with the timings (time to resume after each kill):

    python -m bench.failover            # about a minute
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from genjob.connect import job_queue
from genjob.localredis import SentinelDeployment, free_port
from genjob.queue import read_history
from genjob.settings import GenjobSettings
from genjob_api.auth import hash_key
from tests.support.processes import GenjobProcess, stop_all

API_KEY = "gj_failover_key"
BODY = {"prompt": "a lighthouse in a storm", "width": 64, "height": 64, "steps": 2}
FINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class FailoverReport:
    accepted: int = 0  # jobs answered 202
    kills: int = 0
    failover_seconds: list[float] = field(default_factory=list)  # kill -> sentinels name a new primary
    resume_seconds: list[float] = field(default_factory=list)  # kill -> first 202 of a submit sent after it
    retried_submits: int = 0  # submits that needed a retry under their key (503 or dropped connection)
    final_states: dict[str, int] = field(default_factory=dict)
    not_final: list[str] = field(default_factory=list)  # accepted jobs missing or unfinished at the end
    resurrected: list[str] = field(default_factory=list)  # a non-final event after a final one
    completed_twice: list[str] = field(default_factory=list)  # more than one 'succeeded' event
    lease_expired: int = 0  # jobs requeued or failed because a lease expired (WorkerLost)
    re_executions: int = 0  # claims beyond the first, over all jobs
    # job id -> its events (type/reason) when it ran twice without a lost lease
    re_executions_without_lost_lease: dict[str, list[str]] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # start, load, drain


class _Load:
    """Submits at a steady rate from a thread; a submit that gets a 503 or loses its connection
    is retried under the same Idempotency-Key until it is answered 202."""

    def __init__(self, url: str, rate_per_second: float) -> None:
        self.url = url
        self.interval = 1 / rate_per_second
        self.accepted: list[tuple[str, float, float]] = []  # (job id, sent, answered) monotonic
        self.retried = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run(self) -> None:
        inflight: list[threading.Thread] = []
        while not self._stop.wait(self.interval):
            thread = threading.Thread(target=self._submit, daemon=True)
            thread.start()
            inflight.append(thread)
        for thread in inflight:
            thread.join(timeout=60)

    def _submit(self) -> None:
        key, sent = uuid.uuid4().hex, time.monotonic()
        headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": key}
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for attempt in range(60):
                try:
                    answer = client.post("/v1/generations", json=BODY, headers=headers)
                except httpx.HTTPError:
                    answer = None
                if answer is not None and answer.status_code == 202:
                    self.accepted.append((answer.json()["id"], sent, time.monotonic()))
                    if attempt:
                        self.retried += 1
                    return
                if answer is not None and answer.status_code != 503:
                    raise RuntimeError(f"submit answered {answer.status_code}: {answer.text}")
                time.sleep(0.25)
        raise RuntimeError("a submit was not accepted within 60 attempts")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)


def _environment(work: Path, deployment: SentinelDeployment, model: Path) -> dict[str, str]:
    keys = work / "keys.json"
    keys.write_text(json.dumps([{"key_sha256": hash_key(API_KEY), "tenant": "t", "tier": "pro"}]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENJOB_")}
    models = {"tiny": {"source": str(model), "kind": "sd", "dtype": "float32", "memory_class": "tiny"}}
    env.update(
        GENJOB_REDIS__SENTINELS=json.dumps(deployment.sentinel_addresses),
        GENJOB_REDIS__SENTINEL_MASTER=deployment.master,
        GENJOB_REDIS__WAIT_REPLICAS="1",
        GENJOB_REDIS__WAIT_TIMEOUT_MS="1000",
        GENJOB_REDIS__SOCKET_TIMEOUT_SECONDS="2",
        GENJOB_QUEUE__LEASE_SECONDS="6",
        GENJOB_OPERATOR__REAPER_INTERVAL_SECONDS="0.5",
        GENJOB_API__API_KEYS_FILE=str(keys),
        GENJOB_API__RATE_LIMIT_PER_MINUTE="100000",
        GENJOB_MODELS=json.dumps(models),
        GENJOB_DEFAULT_MODEL="tiny",
        GENJOB_RESULTS__PATH=str(work / "results"),
        GENJOB_WORKER__HEARTBEAT_INTERVAL_SECONDS="0.5",
        GENJOB_WORKER__IDLE_BLOCK_SECONDS="0.5",
        GENJOB_LOG_FORMAT="console",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    return env


def _audit(report: FailoverReport, settings: GenjobSettings, accepted: list[str], timeout: float) -> None:
    """Wait for every accepted job to be final, then read the event stream back."""
    queue = job_queue(settings)
    deadline = time.monotonic() + timeout
    pending = list(accepted)
    records: dict[str, Any] = {}
    while pending and time.monotonic() < deadline:
        for job_id, record in zip(pending, queue.get_many(pending), strict=True):
            if record is not None and record.state.is_final:
                records[job_id] = record
        pending = [j for j in pending if j not in records]
        if pending:
            time.sleep(0.5)
    report.not_final = pending
    report.final_states = dict(Counter(r.state.value for r in records.values()))

    types: dict[str, list[tuple[str, str]]] = defaultdict(list)
    after = "-"
    while True:
        events = read_history(queue.client, queue.keys, after=after, count=5000)
        if not events:
            break
        for event in events:
            types[event.job_id].append((event.type.value, event.fields.get("reason", "")))
        after = events[-1].stream_id
    for job_id in accepted:
        seen = types.get(job_id, [])
        kinds = [kind for kind, _ in seen]
        finals = [i for i, kind in enumerate(kinds) if kind in FINAL]
        if finals and any(kind not in FINAL for kind in kinds[finals[0] + 1 :]):
            report.resurrected.append(job_id)
        if kinds.count("succeeded") > 1:
            report.completed_twice.append(job_id)
        lost_lease = any(reason == "WorkerLost" for _, reason in seen)
        report.lease_expired += lost_lease
        extra_runs = max(0, kinds.count("running") - 1)
        report.re_executions += extra_runs
        if extra_runs and not lost_lease:
            report.re_executions_without_lost_lease[job_id] = [f"{k}/{r}" if r else k for k, r in seen]
    queue.client.close()


def run_failover(
    work: Path,
    *,
    model: Path | None = None,
    kills: int = 2,
    rate_per_second: float = 4.0,
    settle_seconds: float = 5.0,
) -> FailoverReport:
    """The scenario of the module docstring, in `work` (with the tiny model in `model`, built
    there when not given); returns its figures."""
    started = time.monotonic()
    report = FailoverReport()
    work.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = work / "tiny"
        make_tiny = [sys.executable, "-m", "genjob.cli", "model", "make-tiny", str(model)]
        subprocess.run(make_tiny, check=True, capture_output=True)
    deployment = SentinelDeployment(work / "redis").start()
    env = _environment(work, deployment, model)
    settings = GenjobSettings(
        redis={"sentinels": deployment.sentinel_addresses, "sentinel_master": deployment.master}
    )
    processes: list[GenjobProcess] = []
    try:
        port = free_port()
        api = GenjobProcess(["api", "--host", "127.0.0.1", "--port", str(port)], env, work / "api.log")
        processes.append(api.start())
        workers = []
        for i in range(3):
            worker_port = free_port()
            worker_env = dict(env, GENJOB_WORKER__HTTP_PORT=str(worker_port), GENJOB_WORKER__NAME=f"w{i}")
            args = ["worker", "--tiers", "pro", "--device", "cpu"]
            processes.append(GenjobProcess(args, worker_env, work / f"worker-{i}.log").start())
            workers.append((f"http://127.0.0.1:{worker_port}/readyz", processes[-1]))
        url = f"http://127.0.0.1:{port}"
        api.wait_http(f"{url}/readyz")
        for ready_url, process in workers:
            process.wait_http(ready_url)

        report.phase_seconds["start"] = round(time.monotonic() - started, 1)
        load_started = time.monotonic()
        load = _Load(url, rate_per_second)
        load.start()
        time.sleep(settle_seconds)
        for _ in range(kills):
            killed_at = time.monotonic()
            killed, failover = deployment.kill_primary()
            report.kills += 1
            report.failover_seconds.append(round(failover, 2))
            deployment.restart_as_replica(killed)
            time.sleep(settle_seconds)
            after = [answered for _, sent, answered in load.accepted if sent >= killed_at]
            report.resume_seconds.append(round(min(after) - killed_at, 2) if after else -1.0)
        load.stop()
        report.phase_seconds["load"] = round(time.monotonic() - load_started, 1)
        drain_started = time.monotonic()
        report.accepted = len(load.accepted)
        report.retried_submits = load.retried
        _audit(report, settings, [job_id for job_id, _, _ in load.accepted], timeout=90)
        report.phase_seconds["drain"] = round(time.monotonic() - drain_started, 1)
    finally:
        stop_all(processes, grace=20)
        deployment.stop()
    report.phase_seconds["total"] = round(time.monotonic() - started, 1)
    return report


def main() -> None:
    import tempfile

    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="genjob-failover-"))
    report = run_failover(work)
    print(json.dumps({"bench": "failover", "work": str(work), **asdict(report)}))


if __name__ == "__main__":
    main()
