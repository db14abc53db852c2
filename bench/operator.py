"""How fast does the operator take GenerationJobs from create to Queued, and how many API
writes does it spend per job?

Runs the real control plane (hack/cluster), a real redis-server and `genjob operator` as
a process. Reference, measured in the same run: creating the same objects with no
operator running (the API server alone, same client and concurrency). No workers run, so
jobs stop at Queued. API writes are counted by the API server itself
(`apiserver_request_total`), so kopf's own writes, if any, would show too.

    python -m bench.operator                 # 1,000 jobs
    GENJOB_BENCH_QUICK=1 python -m bench.operator   # 100 jobs
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from genjob.crd import GROUP, PLURAL, VERSION

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = 8
TENANTS = 20  # enterprise allows 64 active jobs per tenant: 1,000 jobs over 20 tenants all fit


def log(message: str) -> None:
    print(f"[bench.operator] {message}", file=sys.stderr, flush=True)


def load_harness() -> Any:
    spec = importlib.util.spec_from_file_location("genjob_cluster_harness", REPO / "hack/cluster/harness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["genjob_cluster_harness"] = module
    spec.loader.exec_module(module)
    return module


def body(name: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GenerationJob",
        "metadata": {"name": name},
        "spec": {
            "tier": "enterprise",
            "prompt": "a red fox",
            "width": 64,
            "height": 64,
            "steps": 4,
            "owner": f"tenant-{i % TENANTS}",
        },
    }


def create_all(custom: Any, ns: str, names: list[str]) -> tuple[float, dict[str, float]]:
    """Create the objects with CONCURRENCY threads; returns elapsed seconds and start times."""
    started: dict[str, float] = {}

    def one(item: tuple[int, str]) -> None:
        i, name = item
        started[name] = time.monotonic()
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body(name, i))

    t0 = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(one, enumerate(names)))
    return time.monotonic() - t0, started


def write_counts(cluster: Any) -> dict[str, float]:
    """API server request counters for GenerationJobs and Events, by verb/subresource."""
    text = cluster.api("GET", "/metrics")["raw"]
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1 : line.index("}")].split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        resource, verb = labels.get("resource"), labels.get("verb")
        if resource not in ("generationjobs", "events") or verb in ("GET", "LIST", "WATCH"):
            continue
        key = f"{resource}/{labels.get('subresource') or '-'}/{verb}"
        out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] - before.get(k, 0.0) > 0}


class QueuedWatcher:
    """Watches a namespace and records when each object is first seen Queued."""

    def __init__(self, custom: Any, ns: str) -> None:
        self.custom, self.ns = custom, ns
        self.queued: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from kubernetes import watch

        while not self.stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.ns,
                    PLURAL,
                    timeout_seconds=30,
                ):
                    obj = event["object"]
                    name = obj["metadata"]["name"]
                    if (obj.get("status") or {}).get("phase") == "Queued" and name not in self.queued:
                        self.queued[name] = time.monotonic()
                    if self.stop.is_set():
                        break
            except Exception as exc:  # a dropped watch: reconnect
                if not self.stop.is_set():
                    log(f"watch restarted: {exc}")

    def wait(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.queued) < n:
            time.sleep(0.05)
        return len(self.queued) >= n


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def operator_writes(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("genjob_operator_api_writes_total{"):
            out[line.split('kind="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return out


def main() -> int:
    quick = os.environ.get("GENJOB_BENCH_QUICK") == "1"
    n = 100 if quick else 1000
    harness = load_harness()
    from kubernetes import client as k8s
    from kubernetes import config

    from genjob.crd import render_crd_yaml
    from genjob.localredis import RedisServer, free_port
    from tests.support.operator_harness import OperatorProcess

    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp_dir:
        tmp = Path(tmp_dir)
        cluster = harness.Cluster(tmp / "cluster", die_with_parent=True, log=log)
        redis_server = RedisServer(tmp / "redis").start()
        cluster.start()
        operator = None
        try:
            cluster.kubectl("apply", "--server-side", "-f", "-", input=render_crd_yaml())
            cluster.kubectl(
                "wait", "--for=condition=Established", "--timeout=60s", "crd/generationjobs.genjob.io"
            )
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            api.configuration.connection_pool_maxsize = CONCURRENCY * 2
            custom = k8s.CustomObjectsApi(api)
            for ns in ("warmup", "reference", "bench"):
                cluster.kubectl("create", "namespace", ns)

            log("warm-up: 50 creates")
            create_all(custom, "warmup", [f"w{i}" for i in range(50)])
            log(f"reference: {n} creates with no operator running")
            ref_elapsed, _ = create_all(custom, "reference", [f"ref-{i}" for i in range(n)])
            reference = n / ref_elapsed
            log(f"reference: {reference:.1f} objects/s")

            port = free_port()
            env = {
                **cluster.env(),
                "GENJOB_REDIS__URL": redis_server.url,
                "GENJOB_OPERATOR__HTTP_PORT": str(port),
                "GENJOB_LOG_FORMAT": "console",
                "GENJOB_LOG_LEVEL": "WARNING",
            }
            operator = OperatorProcess(
                env, tmp / "operator.log", ["--namespace", "bench", "--lease-namespace", "bench"]
            )
            operator.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
                    if b"genjob_operator_leader 1.0" in text and b'loop="admission"' in text:
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            watcher = QueuedWatcher(custom, "bench")
            watcher.thread.start()
            time.sleep(1)
            before = write_counts(cluster)
            names = [f"job-{i}" for i in range(n)]
            log(f"measured: {n} creates with the operator running")
            t0 = time.monotonic()
            create_elapsed, started = create_all(custom, "bench", names)
            if not watcher.wait(n, timeout=240):
                raise SystemExit(
                    f"only {len(watcher.queued)} of {n} jobs reached Queued:\n{operator.log_tail()}"
                )
            total = max(watcher.queued.values()) - t0
            # Events are posted off the status path (best effort): let the trailing ones land.
            deadline = time.monotonic() + 60
            while operator_writes(port).get("event", 0) < n and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(1)
            after = write_counts(cluster)
            watcher.stop.set()
            latencies = [(watcher.queued[m] - started[m]) * 1000 for m in names]
            writes = diff(after, before)
            creates = writes.pop("generationjobs/-/POST", 0.0)
            event_writes = sum(v for k, v in writes.items() if k.startswith("events/"))
            job_writes = sum(v for k, v in writes.items() if k.startswith("generationjobs/"))
            value = n / total
            details = {
                "better": "higher",
                "jobs": n,
                "samples": {"latency": n, "rounds": 1},
                "p50_ms": round(statistics.median(latencies), 1),
                "p99_ms": round(percentile(latencies, 0.99), 1),
                "api_writes_per_job": round(job_writes / n, 3),
                "api_writes_scope": "writes to the GenerationJob from create to Queued (finalizer + "
                "Queued status), create excluded; a whole life at defaults is 4 (+ Running, Succeeded), "
                "see docs/operator.md",
                "event_writes_per_job": round(event_writes / n, 3),
                "api_writes_by_kind": {k: int(v) for k, v in sorted(writes.items())},
                "creates_counted": int(creates),
                "operator_counted_writes": operator_writes(port),
                "create_phase_rate_per_s": round(n / create_elapsed, 1),
                "concurrency": CONCURRENCY,
                "reference_what": "create-only objects/s with no operator (API server alone)",
                "machine": f"{os.cpu_count()} cores",
            }
            log(
                f"create->Queued {value:.1f} jobs/s, p50 {details['p50_ms']} ms, p99 {details['p99_ms']} ms, "
                f"{details['api_writes_per_job']} object writes/job + "
                f"{details['event_writes_per_job']} Events/job"
            )
            result = {
                "bench": "operator",
                "value": round(value, 2),
                "unit": "jobs/s",
                "reference": round(reference, 2),
                "ratio": round(value / reference, 3),
                "details": details,
            }
        finally:
            if operator is not None:
                operator.stop()
            cluster.stop()
            redis_server.stop()
    print(json.dumps(result), flush=True)  # the last line
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
