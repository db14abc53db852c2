"""Benchmark: where the seconds of a cold start go, with and without push activation.

A cold start is a job submitted to a tier whose pool is at zero. On the test cluster (the local
control plane with real KEDA and Karpenter's kwok provider, genjob's chart installed, its pods
run as real processes by the pod runner with a model-load delay) each cold start is timed from
the submit through every phase:

    submit -> queued -> ScaledObject active -> pod created -> NodeClaim launched -> node Ready
           -> pod Running -> worker ready -> job claimed -> image stored

for three activation settings (push activation with polling at the default 30 s; polling only at
the default 30 s; polling only at 5 s), each with a GPU node already present and with a node to
provision. Between cold starts the bench scales the pool to zero itself (it does not wait for
the cooldown); "node to provision" deletes the NodeClaims of the pool's NodePool first (it does
not wait for consolidation). With polling, each submit comes after a random wait of up to one
polling interval, so it lands at a uniformly random moment of KEDA's polling cycle, as a
user's would. "ScaledObject active" is counted only when KEDA was seen inactive after the
submit (it keeps a ScaledObject Active until its next poll after the pool emptied).

The three activation settings run one after the other (a helm upgrade each); within one, the
two node situations run at the same time on two tiers whose workers land on different
NodePools: `pro` (Spot) with a node to provision, `enterprise` (on-demand) on a present node.
That halves the bench's time; the cost is that two worker processes may start at once on this
machine's two cores, in every configuration alike.

Where each time comes from: queued, claimed and image stored are the queue's events (redis
server time, ms); worker ready is the worker's own report (models loaded) on its running event;
the Kubernetes phases are the first poll (every POLL_SECONDS) that saw them. The floor is what
no control loop can remove: pod created -> worker ready on a present node (process start +
model load).

    python -m bench.coldstart                  # 10 cold starts per configuration: ~40 minutes
    python -m bench.coldstart --cycles 2       # a quick look (~12 minutes)

The last stdout line is the JSON result: `value` = p50 seconds from submit to job claimed with
push activation and a node to provision, `reference` = the same with polling only at 30 s.
`--plot FILE` writes the timeline chart (PNG). `details.configs.*.submit_to_claimed_samples`
are the samples genjob.sim.coldstart compares the simulator with.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from genjob.keys import RedisKeys
from genjob.queue import EventType, JobEvent, WorkerStart, read_history

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "genjob"
VALUES = REPO / "tests" / "autoscaling" / "values-autoscaling.yaml"
RELEASE, NAMESPACE = "gjcs", "genjob-cs"
GROUP, VERSION, PLURAL = "genjob.io", "v1alpha1", "generationjobs"
REDIS_PASSWORD = "coldstart-bench-password"
# node present -> tier: each node situation on a tier of its own NodePool (Spot / on-demand).
TIERS = {False: "pro", True: "enterprise"}
POLL_SECONDS = 0.25
MODEL_LOAD_DELAY = 5.0
DEFAULT_POLLING = 30

PHASES = (
    "queued",
    "ScaledObject active",
    "pod created",
    "NodeClaim launched",
    "node Ready",
    "pod Running",
    "worker ready",
    "job claimed",
    "image stored",
)


@dataclass(frozen=True)
class Activation:
    """How a pool at zero learns that a job arrived: KEDA's polling, and the operator's push."""

    name: str
    push: bool
    polling_interval: int

    def helm_set(self, push_port: int) -> list[str]:
        sets = [f"worker.keda.pollingInterval={self.polling_interval}"]
        if self.push:
            # KEDA runs on the host here: it dials the operator's process on loopback (the
            # chart's server certificate has 127.0.0.1 among its names).
            sets += [
                "operator.pushScaler.enabled=true",
                f"operator.pushScaler.port={push_port}",
                f"operator.pushScaler.scalerAddress=127.0.0.1:{push_port}",
            ]
        else:
            sets += ["operator.pushScaler.enabled=false"]
        return [arg for s in sets for arg in ("--set", s)]


ACTIVATIONS = (
    Activation("push", push=True, polling_interval=DEFAULT_POLLING),
    Activation("polling 30s", push=False, polling_interval=DEFAULT_POLLING),
    Activation("polling 5s", push=False, polling_interval=5),
)


@dataclass
class ColdStart:
    """One cold start: seconds from the submit to each phase (absent: not observed)."""

    job: str
    at: dict[str, float] = field(default_factory=dict)
    node_launched: bool = False


def percentiles(values: Iterable[float]) -> dict[str, float]:
    data = np.asarray(list(values), dtype=float)
    if not len(data):
        return {}
    p50, p95 = np.percentile(data, [50, 95])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "n": len(data)}


def _true(obj: dict[str, Any] | None, kind: str) -> bool:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


class ColdStarts:
    """Runs cold starts of one tier of an installed release and times their phases."""

    def __init__(
        self,
        api: Any,
        redis: Any,
        keys: RedisKeys,
        namespace: str,
        worker_name: Callable[[str], str],
        log: Callable[[str], None] = print,
    ) -> None:
        from kubernetes import client

        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.redis, self.keys, self.namespace = redis, keys, namespace
        self.worker_name, self.log = worker_name, log
        self._nodepools: dict[str, str] = {}

    # -- what the cluster says ---------------------------------------------------------------
    def _active(self, tier: str) -> bool:
        so = self.custom.get_namespaced_custom_object(
            "keda.sh", "v1alpha1", self.namespace, "scaledobjects", self.worker_name(tier)
        )
        return _true(so, "Active")

    def _pods(self, tier: str) -> list[Any]:
        selector = f"app.kubernetes.io/component=worker,genjob.io/tier={tier}"
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def nodepool(self, tier: str) -> str:
        """The shipped NodePool the tier's workers land on (by their capacity-type nodeSelector)."""
        if tier not in self._nodepools:
            deployment = self.apps.read_namespaced_deployment(self.worker_name(tier), self.namespace)
            capacity = deployment.spec.template.spec.node_selector["karpenter.sh/capacity-type"]
            self._nodepools[tier] = f"genjob-gpu-{capacity}"
        return self._nodepools[tier]

    def _nodeclaims(self, pool: str) -> list[dict[str, Any]]:
        claims = self.custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims")["items"]
        return [c for c in claims if c["metadata"].get("labels", {}).get("karpenter.sh/nodepool") == pool]

    def _karpenter_nodes(self, pool: str) -> list[Any]:
        nodes = self.core.list_node(label_selector=f"karpenter.sh/nodepool={pool}").items
        return list(nodes)

    def _events(self, after: str) -> tuple[list[JobEvent], str]:
        events: list[JobEvent] = []
        while batch := read_history(self.redis, self.keys, after=after, count=1000):
            events += batch
            after = batch[-1].stream_id
        return events, after

    # -- the pool at zero --------------------------------------------------------------------
    def to_zero(self, tier: str, without_nodes: bool, timeout: float = 180) -> None:
        """Scale the pool to zero and wait until its pods are gone; with `without_nodes`, also
        delete the NodeClaims of its NodePool and wait until their nodes are gone. KEDA may still
        call the ScaledObject active until its next poll: that does not change when it scales
        the next job's pool from zero (at its next poll, or at once on a push)."""
        pool = self.nodepool(tier)
        self.apps.patch_namespaced_deployment_scale(
            self.worker_name(tier), self.namespace, {"spec": {"replicas": 0}}
        )
        deadline = time.monotonic() + timeout
        if without_nodes:
            for claim in self._nodeclaims(pool):
                self.custom.delete_cluster_custom_object(
                    "karpenter.sh", "v1", "nodeclaims", claim["metadata"]["name"]
                )
        while self._pods(tier) or (without_nodes and (self._nodeclaims(pool) or self._karpenter_nodes(pool))):
            if time.monotonic() > deadline:
                raise TimeoutError(f"pool {tier} not back at zero within {timeout:.0f}s")
            time.sleep(0.5)

    # -- one cold start ----------------------------------------------------------------------
    def submit(self, tier: str) -> tuple[str, float]:
        name = f"cs-{tier}-{uuid.uuid4().hex[:8]}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "GenerationJob",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"tier": tier, "prompt": f"cold start {name}", "width": 64, "height": 64, "steps": 2},
        }
        submitted = time.time()
        created = self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        return created["metadata"]["uid"], submitted

    def cold_start(self, tier: str, timeout: float = 300) -> ColdStart:
        """Submit one job to `tier` (its pool at zero) and time every phase until its image is stored."""
        assert not self._pods(tier), f"pool {tier} is not at zero"
        pool = self.nodepool(tier)
        before = {c["metadata"]["name"] for c in self._nodeclaims(pool)}
        last = self.redis.xrevrange(self.keys.events, count=1)
        after = last[0][0] if last else "-"
        uid, t0 = self.submit(tier)
        run = ColdStart(job=uid)
        node_names: set[str] = set()
        inactive_seen = False  # "ScaledObject active" counts only once KEDA was seen inactive
        deadline = time.monotonic() + timeout

        def reach(phase: str, happened: bool, when: float | None = None) -> None:
            if happened and phase not in run.at:
                run.at[phase] = round((when if when is not None else time.time()) - t0, 3)

        while "image stored" not in run.at:
            if time.monotonic() > deadline:
                raise TimeoutError(f"cold start of {uid} on {tier}: only {run.at} after {timeout:.0f}s")
            # Each read is stamped with the time it was sent: a phase seen there happened before.
            now = time.time()
            active = self._active(tier)
            inactive_seen = inactive_seen or not active
            reach("ScaledObject active", active and inactive_seen, now)
            seen = time.time()
            pods = self._pods(tier)
            reach("pod created", bool(pods), seen)
            reach("pod Running", any(p.status.phase == "Running" for p in pods), seen)
            node_names |= {p.spec.node_name for p in pods if p.spec.node_name}
            seen = time.time()
            claims = [c for c in self._nodeclaims(pool) if c["metadata"]["name"] not in before]
            if claims:
                run.node_launched = True
                reach("NodeClaim launched", any(_true(c, "Launched") for c in claims), seen)
                seen = time.time()
                ready = [n for n in self._karpenter_nodes(pool) if n.metadata.name in node_names]
                reach("node Ready", any(_true(n.to_dict(), "Ready") for n in ready), seen)
            events, after = self._events(after)
            for event in events:
                if event.job_id != uid:
                    continue
                when = event.ts_ms / 1000
                if event.type == EventType.QUEUED:
                    reach("queued", True, when)
                elif event.type == EventType.RUNNING:
                    reach("job claimed", True, when)
                    start = WorkerStart.from_json(event.fields.get("cold", ""))
                    if start is not None:
                        reach("worker ready", True, start.ready_at_ms / 1000)
                elif event.type == EventType.SUCCEEDED:
                    reach("image stored", True, when)
                elif event.type in (EventType.FAILED, EventType.CANCELLED):
                    raise RuntimeError(f"cold start job {uid} ended {event.type}: {event.fields}")
            time.sleep(max(0.0, POLL_SECONDS - (time.time() - now)))
        return run

    def run(
        self, tier: str, activation: Activation, node_present: bool, cycles: int, rng: random.Random
    ) -> list[ColdStart]:
        """`cycles` cold starts (a present node: one extra, uncounted, first brings the node)."""
        results: list[ColdStart] = []
        if node_present and not self._karpenter_nodes(self.nodepool(tier)):
            self.to_zero(tier, without_nodes=False)
            self.log("  bringing a node (uncounted cold start)")
            self.cold_start(tier)
        while len(results) < cycles:
            self.to_zero(tier, without_nodes=not node_present)
            if not activation.push:  # submit at a random moment of KEDA's polling cycle
                time.sleep(rng.uniform(0, activation.polling_interval))
            run = self.cold_start(tier)
            if run.node_launched and node_present:
                self.log("  a node was launched although one was present (consolidated?): not counted")
                continue
            results.append(run)
            self.log(
                f"  {tier} {len(results)}/{cycles}: " + ", ".join(f"{k} {v:.1f}" for k, v in run.at.items())
            )
        return results


def summarize(runs: list[ColdStart]) -> dict[str, Any]:
    """p50/p95 per phase (seconds since submit), submit -> claimed, and the floor's part."""
    phases = {p: percentiles(r.at[p] for r in runs if p in r.at) for p in PHASES}
    return {
        "cold_starts": len(runs),
        "phases_since_submit": {p: v for p, v in phases.items() if v},
        "submit_to_claimed": percentiles(r.at["job claimed"] for r in runs),
        "pod_created_to_worker_ready": percentiles(
            r.at["worker ready"] - r.at["pod created"] for r in runs if "worker ready" in r.at
        ),
        "submit_to_claimed_samples": [r.at["job claimed"] for r in runs],
    }


def config_name(activation: Activation, node_present: bool) -> str:
    return f"{activation.name}, {'node present' if node_present else 'node to provision'}"


# -- the stand-alone bench: cluster, chart, cold starts --------------------------------------------


def _harness() -> Any:
    import importlib.util

    path = REPO / "hack" / "cluster" / "harness.py"
    spec = importlib.util.spec_from_file_location("genjob_cluster_harness", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["genjob_cluster_harness"] = module
    spec.loader.exec_module(module)
    return module


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    harness = _harness()
    from kubernetes import client, config

    from genjob.localredis import RedisServer
    from genjob_cluster.components import pre_bound_volume
    from genjob_cluster.podrunner import PodRunner, genjob_runner_config
    from genjob_cluster.processes import free_port

    state = Path(args.state_dir).resolve()
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    models, results = REPO / ".genjob" / "models", state / "results"
    results.mkdir()
    results.chmod(0o777)
    if not (models / "tiny" / "model_index.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "genjob.cli", "model", "make-tiny", str(models / "tiny")], check=True
        )
    cluster = harness.Cluster(
        state / "cluster", ports=harness.Ports.dynamic(), autoscalers=True, die_with_parent=True
    )
    redis = RedisServer(state / "redis", password=REDIS_PASSWORD)
    runner = None
    rng = random.Random(args.seed)
    loads: list[list[float]] = []
    try:
        print("[coldstart] starting the control plane, KEDA and Karpenter ...", flush=True)
        cluster.start(timeout=300)
        redis.start()
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        genjob = str(Path(sys.executable).with_name("genjob"))
        runner_config = genjob_runner_config(
            cluster.ports.api, {"genjob-models": models, "genjob-results": results}, genjob
        )
        runner_config.model_load_delay = args.model_load_delay
        runner = PodRunner(client.CoreV1Api(api), state / "pods", runner_config).start()
        cluster.kubectl("create", "namespace", NAMESPACE)
        volumes = pre_bound_volume("genjob-models", NAMESPACE) + pre_bound_volume("genjob-results", NAMESPACE)
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(volumes))
        push_port = free_port()
        base = [
            RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(VALUES),
            "--set", f"externalRedis.url={redis.url}", "--set", f"externalRedis.password={REDIS_PASSWORD}",
        ]  # fmt: skip
        from genjob.connect import redis_client
        from genjob.settings import GenjobSettings

        settings = GenjobSettings(redis={"url": redis.url, "password": REDIS_PASSWORD})
        starts = ColdStarts(
            api, redis_client(settings), RedisKeys(settings.redis.key_prefix), NAMESPACE,
            lambda tier: f"{RELEASE}-genjob-worker-{tier}",
            log=lambda m: print(m, flush=True),
        )  # fmt: skip
        verb = "install"
        configs: dict[str, dict[str, Any]] = {}
        for activation in ACTIVATIONS:
            cluster.helm(verb, *base, *activation.helm_set(push_port), "--wait", "--timeout", "300s")
            verb = "upgrade"
            print(
                f"[coldstart] {activation.name}: {args.cycles} cold starts per tier (load {_load_average()})",
                flush=True,
            )
            # Both node situations at once, each on its own tier and NodePool (see the docstring).
            with ThreadPoolExecutor(max_workers=2) as pool:
                runs = {
                    present: pool.submit(
                        starts.run, tier, activation, present, args.cycles, random.Random(rng.random())
                    )
                    for present, tier in TIERS.items()
                }
                for present, future in runs.items():
                    configs[config_name(activation, present)] = summarize(future.result())
            loads.append(_load_average())
    finally:
        if runner is not None:
            runner.stop()
        cluster.stop()
        redis.stop()
        shutil.rmtree(state / "pods", ignore_errors=True)
    return result(configs, args, loads)


def result(
    configs: dict[str, dict[str, Any]], args: argparse.Namespace, loads: list[list[float]]
) -> dict[str, Any]:
    def claimed_p50(name: str) -> float:
        return configs[name]["submit_to_claimed"]["p50"]

    value = claimed_p50(config_name(ACTIVATIONS[0], False))
    reference = claimed_p50(config_name(ACTIVATIONS[1], False))
    floor = configs[config_name(ACTIVATIONS[0], True)]["pod_created_to_worker_ready"]
    return {
        "bench": "coldstart",
        "value": value,
        "unit": "s",
        "reference": reference,
        "ratio": round(value / reference, 3) if reference else None,
        "details": {
            "better": "lower",
            "value_is": "p50 submit -> job claimed, push activation, node to provision",
            "reference_is": "p50 submit -> job claimed, polling only (30 s), node to provision",
            "floor": floor
            | {"is": "pod created -> worker ready on a present node (process start + model load)"},
            "model_load_delay_s": args.model_load_delay,
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "cycles_per_config": args.cycles,
            "load_average_1_5_15": loads,
            "configs": configs,
        },
    }


def sim_measurement(result: dict[str, Any], activation: Activation, node_present: bool) -> dict[str, Any]:
    """One configuration's submit -> claimed samples as a genjob.sim.coldstart measurement: the
    same workload (one job at a time, the pool at zero; a present node kept by a long
    consolidateAfter) and the chart values the bench set, with jobs spread over KEDA's cycle."""
    details = result["details"]
    name = config_name(activation, node_present)
    tier = TIERS[node_present]
    keep = 86400 if node_present else 120  # a present node stays; else the Spot default removes it
    types = ["g4dn.xlarge", "g4dn.2xlarge", "g5.xlarge", "g5.2xlarge"]
    scenario = {
        "name": "coldstart-" + name.replace(", ", "-").replace(" ", "-"),
        "description": f"bench/coldstart.py's '{name}' on the test cluster",
        "environment": "test_cluster",
        "model_load_seconds": details["model_load_delay_s"],
        "push_scaler": activation.push,
        "spot_interruptions_per_hour": 0,
        "node_pools": {
            capacity: {"instance_types": types, "consolidate_after_seconds": keep}
            for capacity in ("spot", "on-demand")
        },
        "workload": [
            {
                "tier": tier,
                # 24 jobs 20 minutes apart (the pool is back at zero before each), 1.25 s later in
                # KEDA's cycle each time: submits spread evenly over a 5-s and a 30-s poll.
                "arrivals": {"bursts": [{"at_seconds": 600 + k * 1201.25, "jobs": 1} for k in range(24)]},
                "job": {"model": "sd15", "width": 512, "height": 512, "steps": 2},
            }
        ],
        "pools": {tier: {"keda": {"pollingInterval": activation.polling_interval, "cooldownPeriod": 10}}},
    }
    samples = details["configs"][name]["submit_to_claimed_samples"]
    return {
        "source": f"bench/coldstart.py on the test cluster, {details.get('date', '')}, '{name}': "
        f"{len(samples)} cold starts, model-load delay {details['model_load_delay_s']:g} s, "
        f"load average during the run {details['load_average_1_5_15']}",
        "scenario": scenario,
        "measured_wait_seconds": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=10, help="cold starts per configuration")
    parser.add_argument("--model-load-delay", type=float, default=MODEL_LOAD_DELAY)
    parser.add_argument("--state-dir", default=str(REPO / ".coldstart-bench"))
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--plot", type=Path, help="write the timeline chart (PNG) here")
    parser.add_argument(
        "--measurements",
        type=Path,
        help="write each configuration's samples for `genjob sim --coldstart` here",
    )
    parser.add_argument(
        "--from-result", type=Path, help="no cluster: plot / write measurements from a saved last line"
    )
    args = parser.parse_args(argv)
    if args.from_result:
        out = json.loads(args.from_result.read_text().strip().splitlines()[-1])
    else:
        out = run_bench(args)
    if args.plot:
        from bench.coldstart_plot import plot_timeline

        delay = out["details"]["model_load_delay_s"]
        title = f"genjob cold start, phase by phase (test cluster, model-load delay {delay:g} s)"
        plot_timeline(out["details"]["configs"], args.plot, title)
        print(f"[coldstart] timeline: {args.plot}", flush=True)
    if args.measurements:
        args.measurements.mkdir(parents=True, exist_ok=True)
        for activation in ACTIVATIONS:
            for present in (False, True):
                measurement = sim_measurement(out, activation, present)
                path = args.measurements / f"{measurement['scenario']['name']}.json"
                path.write_text(json.dumps(measurement, indent=1) + "\n")
                print(f"[coldstart] measurement: {path}", flush=True)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
