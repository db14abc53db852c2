"""KEDA and Karpenter's kwok provider next to the test control plane, as pure functions.

The harness runs three more host processes when asked for autoscaling
(``Cluster(..., autoscalers=True)``):

- ``keda-operator``: reconciles ScaledObjects, owns the HPAs, polls the scalers and serves
  their metrics over gRPC (mutual TLS with the adapter, from one cert dir);
- ``keda-adapter``: KEDA's metrics server, registered as the ``v1beta1.external.metrics.k8s.io``
  APIService. The API server reaches a host process through a Service of type ExternalName
  ``localhost`` with the adapter's port (Endpoints at 127.0.0.1 are refused by the API server);
- ``karpenter-kwok``: Karpenter's controllers with the kwok cloud provider: real provisioning,
  consolidation and disruption decisions; its NodeClaims become kwok Nodes that the harness's
  kwok makes Ready.

This module only builds their flags, environment and the objects that wire them in; the
``Cluster`` starts the processes. Nothing here touches a process or the network.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .processes import free_port

KEDA_NAMESPACE = "keda"
KEDA_ADAPTER_SERVICE = "keda-metrics-apiserver"
KEDA_OPERATOR_SERVICE = "keda-operator"
# Start order after the control plane; stop goes the other way.
AUTOSCALER_COMPONENTS = ("keda-operator", "keda-adapter", "karpenter-kwok")
# The kwok provider's node class, named like the shipped EC2NodeClass it stands in for.
KWOK_NODECLASS_REF = {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": "genjob-gpu"}
REPO_ROOT = Path(__file__).resolve().parents[2]
KARPENTER_DIR = REPO_ROOT / "karpenter"
INSTANCE_TYPES = KARPENTER_DIR / "kwok" / "instance-types.yaml"


@dataclass(frozen=True)
class AutoscalerPorts:
    """Loopback ports of the autoscalers (dynamic: never the gateway's 8000 or a worker's 8081)."""

    keda_grpc: int
    keda_metrics: int
    keda_probe: int
    adapter_secure: int
    adapter_http: int
    karpenter_metrics: int
    karpenter_probe: int

    @classmethod
    def dynamic(cls) -> AutoscalerPorts:
        return cls(*(free_port() for _ in range(7)))


@dataclass(frozen=True)
class KarpenterTimings:
    """Karpenter's provisioning batch window (its defaults: 1 s idle, 10 s max)."""

    batch_idle: str = "1s"
    batch_max: str = "3s"


def keda_cert_names() -> list[str]:
    """Names KEDA's serving cert must hold: the APIService's Service, the operator's gRPC name."""
    names = []
    for service in (KEDA_ADAPTER_SERVICE, KEDA_OPERATOR_SERVICE):
        names += [f"{service}.{KEDA_NAMESPACE}.svc", f"{service}.{KEDA_NAMESPACE}.svc.cluster.local"]
    return ["localhost", *names]


def keda_env(kubeconfig: Path) -> dict[str, str]:
    """KEDA out of cluster: watch every namespace (WATCH_NAMESPACE set and empty)."""
    return {
        "KUBECONFIG": str(kubeconfig),
        "WATCH_NAMESPACE": "",
        "POD_NAMESPACE": KEDA_NAMESPACE,
        "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
    }


def keda_operator_args(ports: AutoscalerPorts, cert_dir: Path) -> list[str]:
    return [
        f"--metrics-bind-address=127.0.0.1:{ports.keda_metrics}",
        f"--health-probe-bind-address=127.0.0.1:{ports.keda_probe}",
        f"--metrics-service-bind-address=127.0.0.1:{ports.keda_grpc}",
        f"--cert-dir={cert_dir}",
        f"--ca-dir={cert_dir}",
        "--enable-cert-rotation=false",
        "--enable-webhook-patching=false",
        "--enable-apiservice-patching=false",
        "--leader-elect=false",
        "--zap-log-level=info",
    ]


def keda_adapter_args(ports: AutoscalerPorts, cert_dir: Path, kubeconfig: Path) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--lister-kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.adapter_secure}",
        f"--cert-dir={cert_dir}",
        f"--tls-cert-file={cert_dir / 'tls.crt'}",
        f"--tls-private-key-file={cert_dir / 'tls.key'}",
        f"--port={ports.adapter_http}",
        f"--metrics-service-address=127.0.0.1:{ports.keda_grpc}",
        "--v=0",
    ]


def karpenter_env(
    ports: AutoscalerPorts, kubeconfig: Path, instance_types: Path, timings: KarpenterTimings
) -> dict[str, str]:
    return {
        "KUBECONFIG": str(kubeconfig),
        "DISABLE_LEADER_ELECTION": "true",
        "METRICS_PORT": str(ports.karpenter_metrics),
        "HEALTH_PROBE_PORT": str(ports.karpenter_probe),
        "INSTANCE_TYPES_FILE_PATH": str(instance_types),
        "BATCH_IDLE_DURATION": timings.batch_idle,
        "BATCH_MAX_DURATION": timings.batch_max,
        "LOG_LEVEL": "info",
    }


def external_metrics_objects(adapter_port: int, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The namespace, the ExternalName Service and the APIService that route external metrics
    from the API server to KEDA's adapter on the host."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KEDA_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": KEDA_ADAPTER_SERVICE, "namespace": KEDA_NAMESPACE},
            "spec": {
                "type": "ExternalName",
                "externalName": "localhost",
                "ports": [{"name": "https", "port": adapter_port, "targetPort": adapter_port}],
            },
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
            "spec": {
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "caBundle": base64.b64encode(ca_bundle).decode(),
                "service": {"name": KEDA_ADAPTER_SERVICE, "namespace": KEDA_NAMESPACE, "port": adapter_port},
            },
        },
    ]


def kwok_instance_types(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """karpenter/kwok/instance-types.yaml -> the kwok provider's JSON instance types.

    Each offering carries the AWS provider's instance labels as requirements (the kwok provider
    registers offering requirement keys as well-known labels), so NodePool requirements such as
    ``karpenter.k8s.aws/instance-family In [g4dn, g5]`` select these types unchanged.
    """
    types = []
    for it in spec["instanceTypes"]:
        gpu = it["gpu"]
        labels = {
            "karpenter.k8s.aws/instance-family": it["family"],
            "karpenter.k8s.aws/instance-size": it["size"],
            "karpenter.k8s.aws/instance-gpu-count": str(gpu["count"]),
            "karpenter.k8s.aws/instance-gpu-name": gpu["name"],
            "karpenter.k8s.aws/instance-gpu-memory": str(gpu["memoryMiB"]),
            "karpenter.k8s.aws/instance-cpu": str(it["vcpu"]),
        }
        offerings = []
        for capacity_type, price in (("on-demand", it["price"]["onDemand"]), ("spot", it["price"]["spot"])):
            requirements = [
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": [capacity_type]},
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [spec["zone"]]},
                *({"key": k, "operator": "In", "values": [v]} for k, v in labels.items()),
            ]
            offerings.append({"Price": price, "Available": True, "Requirements": requirements})
        types.append(
            {
                "name": it["name"],
                "architecture": "amd64",
                "operatingSystems": ["linux"],
                "resources": {
                    "cpu": str(it["vcpu"]),
                    "memory": it["memory"],
                    "nvidia.com/gpu": str(gpu["count"]),
                    "pods": "110",
                },
                "offerings": offerings,
            }
        )
    return types


def write_kwok_instance_types(destination: Path, source: Path = INSTANCE_TYPES) -> Path:
    destination.write_text(json.dumps(kwok_instance_types(yaml.safe_load(source.read_text())), indent=1))
    return destination


def shipped_nodepools(karpenter_dir: Path = KARPENTER_DIR) -> list[dict[str, Any]]:
    """The NodePools genjob ships (karpenter/nodepool-*.yaml), as dicts."""
    return [yaml.safe_load(p.read_text()) for p in sorted(karpenter_dir.glob("nodepool-*.yaml"))]


def kwok_nodepool(nodepool: dict[str, Any]) -> dict[str, Any]:
    """A shipped NodePool with only its nodeClassRef pointed at the kwok provider's node class."""
    copy = json.loads(json.dumps(nodepool))
    copy["spec"]["template"]["spec"]["nodeClassRef"] = dict(KWOK_NODECLASS_REF)
    return copy


def kwok_nodeclass() -> dict[str, Any]:
    return {
        "apiVersion": "karpenter.kwok.sh/v1alpha1",
        "kind": "KWOKNodeClass",
        "metadata": {"name": KWOK_NODECLASS_REF["name"]},
    }
