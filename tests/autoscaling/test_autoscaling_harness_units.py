"""The autoscaling tier's harness pieces that need no cluster: kwok's stages minus the pod
runner's pods, the kwok instance types, the kwok variant of the shipped NodePools, the
autoscalers' ports and flags."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from genjob_cluster import autoscalers, components
from genjob_cluster.errors import ToolMissingError
from genjob_cluster.tools import Tools

STAGES = """
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: node-initialize}
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions: [{key: .status.conditions, operator: DoesNotExist}]
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-ready}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions: [{key: .metadata.deletionTimestamp, operator: DoesNotExist}]
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-delete}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  next: {delete: true}
"""


def test_kwok_pod_stages_skip_the_pod_runners_pods_and_node_stages_are_unchanged() -> None:
    stages = {s["metadata"]["name"]: s for s in yaml.safe_load_all(components.kwok_stages(STAGES))}
    skip = {"key": f'.metadata.annotations["{components.POD_RUNNER_ANNOTATION}"]', "operator": "DoesNotExist"}
    for name in ("pod-ready", "pod-delete"):
        assert skip in stages[name]["spec"]["selector"]["matchExpressions"], name
    assert (
        stages["pod-ready"]["spec"]["selector"]["matchExpressions"][0]["key"] == ".metadata.deletionTimestamp"
    )
    assert skip not in stages["node-initialize"]["spec"]["selector"]["matchExpressions"]


def _labels(offering: dict[str, Any], instance: dict[str, Any]) -> dict[str, str]:
    labels = {r["key"]: r["values"][0] for r in offering["Requirements"]}
    return labels | {"kubernetes.io/arch": instance["architecture"], "kubernetes.io/os": "linux"}


def _satisfies(labels: dict[str, str], requirement: dict[str, Any]) -> bool:
    value = labels.get(requirement["key"])
    if requirement["operator"] == "In":
        return value in requirement["values"]
    if requirement["operator"] == "NotIn":
        return value not in requirement["values"]
    raise AssertionError(f"operator {requirement['operator']} not handled by this test")


def test_the_shipped_nodepools_select_gpu_types_of_their_capacity_type_from_the_kwok_instance_types() -> None:
    types = autoscalers.kwok_instance_types(yaml.safe_load(autoscalers.INSTANCE_TYPES.read_text()))
    assert {t["name"] for t in types} == {
        "g4dn.xlarge",
        "g4dn.2xlarge",
        "g5.xlarge",
        "g5.2xlarge",
        "g5.4xlarge",
    }
    assert all(t["resources"]["nvidia.com/gpu"] == "1" for t in types)
    chosen: dict[str, set[tuple[str, str]]] = {}
    for nodepool in autoscalers.shipped_nodepools():
        requirements = nodepool["spec"]["template"]["spec"]["requirements"]
        chosen[nodepool["metadata"]["name"]] = {
            (t["name"], _labels(o, t)["karpenter.sh/capacity-type"])
            for t in types
            for o in t["offerings"]
            if all(_satisfies(_labels(o, t), r) for r in requirements)
        }
    assert {c for _, c in chosen["genjob-gpu-spot"]} == {"spot"}
    assert {c for _, c in chosen["genjob-gpu-on-demand"]} == {"on-demand"}
    # xlarge and 2xlarge only (the NodePools' size requirement): never the 4xlarge.
    assert {n for n, _ in chosen["genjob-gpu-spot"]} == {
        "g4dn.xlarge",
        "g4dn.2xlarge",
        "g5.xlarge",
        "g5.2xlarge",
    }
    # The kwok provider reads offering prices: Spot is cheaper than on-demand for every type.
    for t in types:
        prices = {_labels(o, t)["karpenter.sh/capacity-type"]: o["Price"] for o in t["offerings"]}
        assert 0 < prices["spot"] < prices["on-demand"], t["name"]
    json.dumps(types)  # the provider reads JSON


def test_the_kwok_nodepools_differ_from_the_shipped_ones_only_in_their_node_class() -> None:
    for shipped in autoscalers.shipped_nodepools():
        kwok = autoscalers.kwok_nodepool(shipped)
        assert kwok["spec"]["template"]["spec"].pop("nodeClassRef") == autoscalers.KWOK_NODECLASS_REF
        shipped["spec"]["template"]["spec"].pop("nodeClassRef")
        assert kwok == shipped


def test_autoscaler_ports_are_distinct_and_flags_bind_loopback(tmp_path) -> None:
    ports = autoscalers.AutoscalerPorts.dynamic()
    values = list(vars(ports).values())
    assert len(set(values)) == len(values)
    assert not {8000, 8080, 8081} & set(values)
    operator = autoscalers.keda_operator_args(ports, tmp_path)
    adapter = autoscalers.keda_adapter_args(ports, tmp_path, tmp_path / "kubeconfig")
    for flag in operator:
        if "bind-address" in flag:
            assert flag.split("=", 1)[1].startswith("127.0.0.1:"), flag
    assert f"--metrics-service-address=127.0.0.1:{ports.keda_grpc}" in adapter
    assert "--bind-address=127.0.0.1" in adapter
    env = autoscalers.keda_env(tmp_path / "kubeconfig")
    assert env["WATCH_NAMESPACE"] == "", (
        "KEDA watches every namespace only when WATCH_NAMESPACE is set and empty"
    )


def test_the_external_metrics_apiservice_routes_to_the_adapter_port_with_the_keda_ca() -> None:
    objects = autoscalers.external_metrics_objects(4443, b"CA")
    service = next(o for o in objects if o["kind"] == "Service")
    api = next(o for o in objects if o["kind"] == "APIService")
    assert service["spec"] == {
        "type": "ExternalName",
        "externalName": "localhost",
        "ports": [{"name": "https", "port": 4443, "targetPort": 4443}],
    }
    assert api["spec"]["service"]["port"] == 4443 and api["spec"]["caBundle"] == "Q0E="


def test_autoscaler_tools_are_checked_only_when_asked(tmp_path) -> None:
    keys = (
        "KUBERNETES_VERSION",
        "ETCD_VERSION",
        "KWOK_VERSION",
        "HELM_VERSION",
        "KEDA_VERSION",
        "KARPENTER_VERSION",
    )
    tools = Tools(tmp_path, dict.fromkeys(keys, "v0"))
    with pytest.raises(ToolMissingError) as base:
        tools.check()
    with pytest.raises(ToolMissingError) as full:
        tools.check(autoscalers=True)
    assert "keda-operator" not in str(base.value) and "karpenter-kwok" not in str(base.value)
    for missing in ("keda-operator", "keda-adapter", "karpenter-kwok", "karpenter-kwok-v0"):
        assert missing in str(full.value), missing


def test_pod_runner_mounts_never_hide_a_source_or_an_earlier_mount() -> None:
    from pathlib import Path

    from genjob_cluster.podrunner import mount_order

    pod = Path("/tmp/pytest-of-root/pytest-1/pods/p/volumes")
    mounts = [
        (Path("/srv/hook"), "/podrunner", True),
        (pod / "tmp", "/tmp", False),  # an emptyDir over /tmp: it would hide the sources below
        (pod / "config", "/etc/genjob", True),
        (pod / "token", "/var/run/secrets/kubernetes.io/serviceaccount", True),
        (Path("/srv/models"), "/models", True),
    ]
    targets = [target for _, target, _ in mount_order(mounts)]
    assert targets[-1] == "/tmp"
    assert sorted(targets) == sorted(t for _, t, _ in mounts)
    with pytest.raises(RuntimeError, match="would hide"):
        mount_order([(pod / "a", "/tmp", False), (Path("/srv/x"), "/tmp/x", False)])


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_pod_runner_mounts_a_volume_inside_a_read_only_configmap_volume(tmp_path) -> None:
    """A kubelet creates the mount points of volumes nested in a configMap or secret volume
    (kubernetes#60342): the chart puts the push TLS Secret at /etc/genjob/push-tls, inside the read-only
    config at /etc/genjob must start, as on a real node ("mkdir: Read-only file system" before)."""
    from genjob_cluster.podrunner import mount_commands

    config, tls, root = tmp_path / "config", tmp_path / "tls", tmp_path / "root"
    for d in (config, tls, root):
        d.mkdir()
    (config / "config.yaml").write_text("a: 1\n")
    (tls / "tls.crt").write_text("cert\n")
    mounts = [(config, f"{root}/etc/genjob", True), (tls, f"{root}/etc/genjob/push-tls", True)]
    script = [
        *mount_commands(mounts),
        f"cat {root}/etc/genjob/config.yaml {root}/etc/genjob/push-tls/tls.crt",
    ]
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", "\n".join(script)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == "a: 1\ncert\n"
