"""`make cluster-demo`: genjob's Kubernetes path on a laptop, narrated step by step.

Brings up the local control plane with KEDA and Karpenter's kwok provider, a redis-server on
the host, installs charts/genjob with helm the way the README tells a platform team (plus
``charts/genjob/ci/local-cluster-values.yaml``), runs every genjob pod (operator, gateway,
workers) as a real process through the pod runner, applies
``manifests/examples/valid/txt2img-minimal.yaml`` and narrates what follows: the ScaledObject
turns active, a worker pod is Pending, Karpenter launches a NodeClaim (instance type, Spot or
on-demand), the node turns Ready, the pod Running, the job Queued -> Running -> Succeeded, where
the PNG is, the pool back to zero and the node removed. Ctrl-C tears everything down.

What is real: the API server, scheduler and controllers, KEDA, Karpenter's decisions, genjob's
operator, gateway and workers (the tiny random-weight model on CPU). What is simulated: the
nodes and the container runtime (kwok and the pod runner).

    python hack/cluster/demo.py [--state-dir .cluster-demo] [--until pool-zero|node-removed]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CHART = REPO / "charts" / "genjob"
LOCAL_VALUES = CHART / "ci" / "local-cluster-values.yaml"
EXAMPLE = REPO / "manifests" / "examples" / "valid" / "txt2img-minimal.yaml"
RELEASE = NAMESPACE = "genjob"
JOB_NAMESPACE = "default"


def _harness() -> Any:
    spec = importlib.util.spec_from_file_location("genjob_cluster_harness", HERE / "harness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["genjob_cluster_harness"] = module
    spec.loader.exec_module(module)
    return module


def say(message: str, start: float) -> None:
    print(f"[{time.monotonic() - start:6.1f}s] {message}", flush=True)


class Narrator:
    """Polls the cluster and prints each step of the job's way the first time it happens."""

    def __init__(self, cluster: Any, results: Path, start: float) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self.core, self.custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        self.results, self.start = results, start
        self.seen: set[str] = set()
        self.nodes: set[str] = set()
        self.progress = ""

    def step(self, key: str, happened: bool, message: str) -> bool:
        if happened and key not in self.seen:
            self.seen.add(key)
            say(message, self.start)
        return key in self.seen

    def poll(self, job: str) -> dict[str, Any]:
        gj = self.custom.get_namespaced_custom_object(
            "genjob.io", "v1alpha1", JOB_NAMESPACE, "generationjobs", job
        )
        status, tier = gj.get("status", {}), gj["spec"]["tier"]
        name = f"{RELEASE}-worker-{tier}"
        so = self.custom.get_namespaced_custom_object("keda.sh", "v1alpha1", NAMESPACE, "scaledobjects", name)
        active = any(
            c["type"] == "Active" and c["status"] == "True"
            for c in so.get("status", {}).get("conditions", [])
        )
        pods = self.core.list_namespaced_pod(NAMESPACE, label_selector=f"genjob.io/tier={tier}").items
        claims = self.custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims")["items"]
        nodes = {n.metadata.name: n for n in self.core.list_node().items}
        self.nodes |= {p.spec.node_name for p in pods if p.spec.node_name}
        self.step("phase-Queued", status.get("phase") in ("Queued", "Running", "Succeeded"),
                  f"GenerationJob {job}: Queued on tier {tier} (kubectl get gj)")  # fmt: skip
        self.step("active", active, f"ScaledObject {name}: active (KEDA saw the job in Redis), 0 -> 1")
        self.step(
            "pending", any(p.status.phase == "Pending" for p in pods), "worker pod Pending: no GPU node fits"
        )
        for claim in claims:
            labels, claim_name = claim["metadata"].get("labels", {}), claim["metadata"]["name"]
            instance = labels.get("node.kubernetes.io/instance-type")
            capacity, pool = labels.get("karpenter.sh/capacity-type"), labels.get("karpenter.sh/nodepool")
            message = f"Karpenter NodeClaim {claim_name}: {instance} ({capacity}) from NodePool {pool}"
            self.step(f"claim-{claim_name}", True, message)
        for node in self.nodes & set(nodes):
            ready = any(c.type == "Ready" and c.status == "True" for c in nodes[node].status.conditions or [])
            self.step(f"ready-{node}", ready, f"node {node} Ready")
        self.step(
            "running-pod",
            any(p.status.phase == "Running" for p in pods),
            "worker pod Running (a real process)",
        )
        progress = status.get("progress") or {}
        if status.get("phase") == "Running" and progress:
            text = f"{progress.get('step')}/{progress.get('total')}"
            if text != self.progress:
                self.progress = text
                say(f"GenerationJob {job}: Running, step {text} on {status.get('worker')}", self.start)
        self.step(
            "phase-Running", status.get("phase") in ("Running", "Succeeded"), f"GenerationJob {job}: Running"
        )
        if self.step(
            "phase-Succeeded", status.get("phase") == "Succeeded", f"GenerationJob {job}: Succeeded"
        ):
            for image in (status.get("result") or {}).get("images", []):
                path = self.results / Path(image["uri"].split("://", 1)[1]).relative_to(
                    "/var/lib/genjob/results"
                )
                self.step(f"png-{image['uri']}", True, f"the PNG: {path} (in the pods: {image['uri']})")
        if status.get("phase") in ("Failed", "Cancelled"):
            raise SystemExit(
                f"the job ended {status['phase']}: {status.get('reason')}: {status.get('message')}"
            )
        if "phase-Succeeded" in self.seen:
            self.step("zero", not pods, f"pool {tier} back to zero (KEDA's cooldown)")
            gone = bool(self.nodes) and not (self.nodes & set(nodes))
            self.step("removed", gone, "Karpenter removed the empty node (NodePool consolidateAfter)")
        return status


def _build_tiny_model(models: Path) -> None:
    if (models / "tiny" / "model_index.json").is_file():
        return
    print(f"[demo] building the tiny random-weight model in {models / 'tiny'} (once)", flush=True)
    subprocess.run(
        [sys.executable, "-m", "genjob.cli", "model", "make-tiny", str(models / "tiny")], check=True
    )


def run(args: argparse.Namespace) -> int:
    harness = _harness()
    from kubernetes import client, config

    from genjob.localredis import RedisServer
    from genjob_cluster.components import pre_bound_volume
    from genjob_cluster.podrunner import PodRunner, genjob_runner_config

    state = args.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    models, results = REPO / ".genjob" / "models", state / "results"
    results.mkdir(exist_ok=True)
    results.chmod(0o777)
    start = time.monotonic()
    _build_tiny_model(models)
    ports = harness.Ports.dynamic() if args.dynamic_ports else harness.Ports.fixed()
    cluster = harness.Cluster(state, ports=ports, autoscalers=True, die_with_parent=True)
    redis = RedisServer(state / "redis", appendonly=True, password="genjob-local-demo")
    runner = None
    try:
        say("starting the control plane, KEDA and Karpenter (kwok provider) ...", start)
        cluster.start(timeout=240)
        print(
            f"\n  export KUBECONFIG={cluster.kubeconfig}\n  export PATH={cluster.bin_dir}:$PATH", flush=True
        )
        print("  kubectl get gj -w;  kubectl describe gj lighthouse;  kubectl get nodeclaims\n", flush=True)
        redis.start()
        say(f"redis-server on {redis.url} (AOF on; genjob's queue)", start)
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        genjob = str(Path(sys.executable).with_name("genjob"))
        pvc_dirs = {"genjob-models": models, "genjob-results": results}
        runner = PodRunner(
            client.CoreV1Api(api),
            state / "pods",
            genjob_runner_config(cluster.ports.api, pvc_dirs, genjob),
            log=lambda m: print(f"[demo] {m}", flush=True) if args.verbose else None,
        ).start()
        cluster.kubectl("create", "namespace", NAMESPACE)
        # The models claim is the platform's (the chart mounts it); the results claim the chart creates.
        volumes = pre_bound_volume("genjob-models", NAMESPACE)
        volumes += pre_bound_volume("genjob-results", NAMESPACE, with_claim=False)
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(volumes))
        say(
            f"helm install {RELEASE} charts/genjob -n {NAMESPACE} -f {LOCAL_VALUES.relative_to(REPO)} ...",
            start,
        )
        cluster.helm(
            "install", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(LOCAL_VALUES),
            "--set", f"externalRedis.url={redis.url}", "--set", f"externalRedis.password={redis.password}",
            "--wait", "--timeout", "300s",
        )  # fmt: skip
        say("installed: operator and gateway Running as processes, every worker pool at 0 replicas", start)
        cluster.kubectl("apply", "-n", JOB_NAMESPACE, "-f", str(EXAMPLE))
        job = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]
        say(f"kubectl apply -f {EXAMPLE.relative_to(REPO)}", start)
        narrator = Narrator(cluster, results, start)
        last = "zero" if args.until == "pool-zero" else "removed"
        deadline = time.monotonic() + args.timeout
        while last not in narrator.seen:
            if time.monotonic() > deadline:
                print(
                    f"[demo] gave up after {args.timeout:.0f}s; pod logs in {state / 'pods'}", file=sys.stderr
                )
                return 1
            narrator.poll(job)
            time.sleep(0.5)
        say(f"done: {job} Succeeded and the {args.until.replace('-', ' ')}", start)
        if args.keep:
            print("[demo] still running (Ctrl-C stops everything)", flush=True)
            signal.pause()
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        print("[demo] tearing down", flush=True)
        if runner is not None:
            runner.stop()
        cluster.stop()
        redis.stop()
        shutil.rmtree(state / "pods", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, default=REPO / ".cluster-demo")
    parser.add_argument("--until", choices=["pool-zero", "node-removed"], default="node-removed")
    parser.add_argument("--timeout", type=float, default=900, help="seconds for the whole flow")
    parser.add_argument("--keep", action="store_true", help="keep everything running at the end until Ctrl-C")
    parser.add_argument(
        "--dynamic-ports", action="store_true", help="free ports instead of 16443/12379 (tests)"
    )
    parser.add_argument("--verbose", action="store_true", help="also print the pod runner's actions")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
