"""Fixtures of the autoscaling tier: genjob's chart on a control plane with real KEDA and
Karpenter, and real genjob processes for its pods.

- ``autoscaling_cluster``: the harness's control plane with ``autoscalers=True`` (KEDA's
  operator and metrics adapter, Karpenter's kwok provider, the shipped NodePools pointed at
  the kwok node class);
- ``pod_runner``: hack/cluster/podrunner.py plays the kubelet for the chart's pods (the
  operator and every worker run as real ``genjob`` processes on the tiny model);
- ``release``: ``helm install`` of charts/genjob with tests/autoscaling/values-autoscaling.yaml,
  an external redis-server (with a password) on the host, and helpers to submit
  GenerationJobs and read what KEDA, Karpenter and the queue did.

``GENJOB_SKIP_CLUSTER=1`` (or ``GENJOB_SKIP_AUTOSCALING=1``) skips the tier; missing binaries
are an error that says to run ``make tools``.
"""

from __future__ import annotations

import atexit
import importlib.util
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from genjob.connect import job_queue
from genjob.keys import RedisKeys
from genjob.localredis import RedisServer
from genjob.queue import EventType, JobEvent, read_history
from genjob.settings import GenjobSettings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "genjob"
VALUES = Path(__file__).with_name("values-autoscaling.yaml")
RELEASE, NAMESPACE = "gjas", "genjob-as"
GROUP, VERSION, PLURAL = "genjob.io", "v1alpha1", "generationjobs"
REDIS_PASSWORD = "autoscaling-test-password"


def _load(name: str, path: Path) -> Any:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


_cluster_conftest = _load("genjob_cluster_conftest", REPO / "tests" / "cluster" / "conftest.py")
harness = _cluster_conftest.harness
wait_for = _cluster_conftest.wait_for
from genjob_cluster.components import pre_bound_volume  # noqa: E402  (registered by the harness)
from genjob_cluster.podrunner import PodRunner, genjob_runner_config  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "autoscaling: needs KEDA and Karpenter on the control plane")
    config.addinivalue_line("markers", "cluster: needs the real control plane")


# Scenario a needs a cluster with no GPU node yet (a leftover empty node would take its pod):
# the scenarios run in this order, on one release.
SCENARIO_ORDER = ("harness_units", "scale_from_zero", "burst", "disruption", "coldstart", "demo")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.stem.removeprefix("test_autoscaling_")
        return SCENARIO_ORDER.index(name) if name in SCENARIO_ORDER else len(SCENARIO_ORDER)

    here = Path(__file__).parent
    ours = [i for i in items if i.path.parent == here]
    ours.sort(key=rank)
    positions = [n for n, i in enumerate(items) if i.path.parent == here]
    for position, item in zip(positions, ours, strict=True):
        items[position] = item


@pytest.fixture(scope="session")
def autoscaling_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if os.environ.get("GENJOB_SKIP_CLUSTER") == "1" or os.environ.get("GENJOB_SKIP_AUTOSCALING") == "1":
        pytest.skip("autoscaling tier skipped (GENJOB_SKIP_CLUSTER / GENJOB_SKIP_AUTOSCALING)")
    tools = harness.Tools.from_env()
    try:
        tools.check(autoscalers=True)
    except harness.ToolMissingError as exc:
        pytest.fail(str(exc), pytrace=False)
    cluster = harness.Cluster(
        tmp_path_factory.mktemp("as-cluster"), tools=tools, die_with_parent=True, autoscalers=True
    )
    atexit.register(cluster.stop)
    cluster.start(timeout=180)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def as_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("as-models")
    subprocess.run(
        [sys.executable, "-m", "genjob.cli", "model", "make-tiny", str(models / "tiny")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return models


@pytest.fixture(scope="session")
def as_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("as-redis"), password=REDIS_PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def as_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The host directory behind the results PVC (what the workers write, as the pods' user)."""
    results = tmp_path_factory.mktemp("as-results")
    results.chmod(0o777)
    return results


@pytest.fixture(scope="session")
def pod_runner(
    autoscaling_cluster: Any, as_tiny_model: Path, as_results: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PodRunner]:
    from kubernetes import client

    genjob = str(Path(sys.executable).with_name("genjob"))
    pvc_dirs = {"genjob-models": as_tiny_model, "genjob-results": as_results}
    config = genjob_runner_config(autoscaling_cluster.ports.api, pvc_dirs, genjob)
    core = client.CoreV1Api(autoscaling_cluster_api(autoscaling_cluster))
    runner = PodRunner(core, tmp_path_factory.mktemp("as-pods"), config, log=lambda m: print(m, flush=True))
    runner.start()
    yield runner
    runner.stop()


def autoscaling_cluster_api(cluster: Any) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


def helm_args(redis: RedisServer) -> list[str]:
    """The release, chart, namespace and values of `helm install` / `helm upgrade`."""
    return [
        RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(VALUES),
        "--set", f"externalRedis.url={redis.url}", "--set", f"externalRedis.password={REDIS_PASSWORD}",
    ]  # fmt: skip


@dataclass
class Release:
    """genjob installed with helm, and what tests read and do through it."""

    cluster: Any
    runner: PodRunner
    redis: RedisServer
    api: Any
    settings: GenjobSettings
    results_dir: Path
    queue: Any = None

    def __post_init__(self) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.queue = job_queue(self.settings)

    @property
    def keys(self) -> RedisKeys:
        return RedisKeys(self.settings.redis.key_prefix)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60) -> Any:
        return self.cluster.kubectl(*args, check=check, input=input, timeout=timeout)

    # -- jobs -----------------------------------------------------------------------------

    def submit(self, tier: str, count: int, **spec: Any) -> list[str]:
        names = [f"{tier}-{uuid.uuid4().hex[:8]}" for _ in range(count)]
        docs = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "GenerationJob",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "tier": tier,
                    "prompt": f"autoscaling test {name}",
                    "width": 64,
                    "height": 64,
                    "steps": 4,
                }
                | spec,
            }
            for name in names
        ]
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
        return names

    def job(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)

    def phases(self, names: list[str]) -> dict[str, str]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
        by_name = {i["metadata"]["name"]: i.get("status", {}).get("phase", "") for i in items}
        return {n: by_name.get(n, "<gone>") for n in names}

    def wait_succeeded(self, names: list[str], timeout: float = 240) -> dict[str, str]:
        def done() -> dict[str, str] | None:
            phases = self.phases(names)
            failed = {n: p for n, p in phases.items() if p in ("Failed", "Cancelled")}
            assert not failed, f"jobs ended badly: {failed}\n{self.runner.log_tail()}"
            return phases if all(p == "Succeeded" for p in phases.values()) else None

        return wait_for(f"{len(names)} jobs Succeeded", done, timeout=timeout, interval=1, logs=[self.runner])

    def upgrade_args(self) -> list[str]:
        return ["upgrade", *helm_args(self.redis)]

    def uids(self, names: list[str]) -> dict[str, str]:
        return {name: self.job(name)["metadata"]["uid"] for name in names}

    def history(self) -> list[JobEvent]:
        """Every event of the queue's stream (job ids are the GenerationJobs' uids)."""
        client, events, after = self.redis.client(), [], "-"
        while batch := read_history(client, self.keys, after=after, count=1000):
            events += batch
            after = batch[-1].stream_id
        return events

    def count_events(self, names: list[str], kind: EventType) -> dict[str, int]:
        by_uid = {uid: name for name, uid in self.uids(names).items()}
        counts = dict.fromkeys(names, 0)
        for event in self.history():
            if event.type == kind and event.job_id in by_uid:
                counts[by_uid[event.job_id]] += 1
        return counts

    # -- KEDA, the HPA, the pool ------------------------------------------------------------

    def worker_deployment(self, tier: str) -> str:
        return f"{RELEASE}-genjob-worker-{tier}"

    def replicas(self, tier: str) -> int:
        return (
            self.apps.read_namespaced_deployment(self.worker_deployment(tier), NAMESPACE).spec.replicas or 0
        )

    def scaledobject(self, tier: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            "keda.sh", "v1alpha1", NAMESPACE, "scaledobjects", self.worker_deployment(tier)
        )

    def scaledobject_active(self, tier: str) -> bool:
        conditions = self.scaledobject(tier).get("status", {}).get("conditions", [])
        return any(c["type"] == "Active" and c["status"] == "True" for c in conditions)

    def worker_pods(self, tier: str) -> list[Any]:
        selector = f"app.kubernetes.io/component=worker,genjob.io/tier={tier}"
        return self.core.list_namespaced_pod(NAMESPACE, label_selector=selector).items

    def expected_replicas(self, tier: str, list_length: int, max_replicas: int) -> int:
        stats = self.queue.stats([tier])[0]
        return min(max_replicas, math.ceil((stats.pending + stats.inflight) / list_length))

    # -- Karpenter -----------------------------------------------------------------------------

    def nodeclaims(self) -> list[dict[str, Any]]:
        return self.custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims")["items"]

    def karpenter_nodes(self) -> list[Any]:
        return [
            n for n in self.core.list_node().items if "karpenter.sh/nodepool" in (n.metadata.labels or {})
        ]

    def node_of(self, pod: Any) -> Any:
        return self.core.read_node(pod.spec.node_name)


@pytest.fixture(scope="session")
def release(
    autoscaling_cluster: Any, pod_runner: PodRunner, as_redis: RedisServer, as_results: Path
) -> Iterator[Release]:
    cluster = autoscaling_cluster
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl(
        "label", "namespace", NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip
    objects = pre_bound_volume("genjob-models", NAMESPACE) + pre_bound_volume("genjob-results", NAMESPACE)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    wait_for(
        "serviceaccount default",
        lambda: cluster.kubectl("get", "sa", "default", "-n", NAMESPACE, check=False).returncode == 0,
    )
    settings = GenjobSettings(redis={"url": as_redis.url, "password": REDIS_PASSWORD})
    cluster.helm("install", *helm_args(as_redis), "--wait", "--timeout", "180s")
    rel = Release(cluster, pod_runner, as_redis, autoscaling_cluster_api(cluster), settings, as_results)
    yield rel
    cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", check=False)
