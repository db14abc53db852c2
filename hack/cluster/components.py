"""What each control-plane component is started with, as pure functions.

Command-line flags of etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok, the kubeconfigs they and people use, and kwok Node manifests. Nothing here
touches a process or the network, so it is easy to read and to test.
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from .processes import Ports

SERVICE_CIDR = "10.0.0.0/24"  # never routed: only the API server's Service IPs come from it
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
# Pods with this annotation are run as real processes by the harness's pod runner
# (hack/cluster/podrunner.py), which plays their kubelet; kwok's pod stages leave them alone.
POD_RUNNER_ANNOTATION = "podrunner.genjob.io/run"
DEFAULT_NODE = "kwok-cpu-0"
# Start order; stop goes the other way.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def etcd_args(ports: Ports, data_dir: Path) -> list[str]:
    """A single-member etcd on plain HTTP loopback; no fsync (test data is throwaway)."""
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        f"--data-dir={data_dir}",
        "--name=default",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_args(ports: Ports, pki: Path) -> list[str]:
    """Client-cert authentication, RBAC, service-account tokens, and the aggregation layer."""
    return [
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.api}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=RBAC",
        "--anonymous-auth=false",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--endpoint-reconciler-type=none",  # loopback may not be an Endpoints address
        "--allow-privileged=true",
        "--profiling=false",
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        f"--cert-dir={pki / 'apiserver-generated'}",
    ]


def _secure_serving(name: str, port: int, pki: Path) -> list[str]:
    kubeconfig = pki / f"{name}.kubeconfig"
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={pki / (name + '-generated')}",
        "--leader-elect=false",
    ]


def controller_manager_args(ports: Ports, pki: Path) -> list[str]:
    """Each controller uses its own service account (as kubeadm does); signs CSRs with the CA."""
    return [
        *_secure_serving("controller-manager", ports.controller_manager, pki),
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
    ]


def scheduler_args(ports: Ports, pki: Path) -> list[str]:
    return _secure_serving("scheduler", ports.scheduler, pki)


def kwok_args(pki: Path, stages: Path) -> list[str]:
    """kwok manages only Nodes annotated ``kwok.x-k8s.io/node: fake`` (see kwok_node); ``stages``
    is the output of kwok_stages() (fast pod and node lifecycles, minus the pod runner's pods)."""
    return [
        f"--kubeconfig={pki / 'kwok.kubeconfig'}",
        f"--config={stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
        "--node-lease-duration-seconds=40",
    ]


def kwok_stages(text: str) -> str:
    """kwok's Stage objects with every Pod stage made to skip the pod runner's pods."""
    skip = {"key": f'.metadata.annotations["{POD_RUNNER_ANNOTATION}"]', "operator": "DoesNotExist"}
    stages = [s for s in yaml.safe_load_all(text) if s]
    for stage in stages:
        if stage["spec"]["resourceRef"]["kind"] == "Pod":
            selector = stage["spec"].setdefault("selector", {})
            selector.setdefault("matchExpressions", []).append(dict(skip))
    return yaml.safe_dump_all(stages, sort_keys=False)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig_dict(server: str, pki: Path, client: str, name: str = "genjob-test") -> dict:
    """A kubeconfig with the CA and the ``client`` cert embedded (portable, self-contained)."""
    cluster = {"server": server, "certificate-authority-data": _b64(pki / "ca.crt")}
    user = {
        "client-certificate-data": _b64(pki / f"{client}.crt"),
        "client-key-data": _b64(pki / f"{client}.key"),
    }
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": client, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": client}}],
        "current-context": name,
    }


def kwok_node(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    capacity: dict[str, str] | None = None,
    taints: list[dict] | None = None,
) -> dict:
    """A Node manifest that the harness's kwok manages (its annotation selects it)."""
    capacity = capacity or {"cpu": "32", "memory": "128Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **(labels or {}),
            },
        },
        "spec": {"taints": taints or []},
        "status": {"capacity": dict(capacity), "allocatable": dict(capacity)},
    }


def pre_bound_volume(claim: str, namespace: str, *, with_claim: bool = True) -> list[dict]:
    """A PersistentVolume bound in advance to ``namespace/claim`` (no provisioner runs here), and
    the claim itself unless a chart creates it (``with_claim=False``)."""
    name = f"{namespace}-{claim}"
    spec = {"accessModes": ["ReadWriteMany"], "storageClassName": "genjob-local"}
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            **spec,
            "capacity": {"storage": "50Gi"},
            "hostPath": {"path": f"/nonexistent/{name}"},
            "claimRef": {"namespace": namespace, "name": claim},
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": namespace},
        "spec": {**spec, "resources": {"requests": {"storage": "50Gi"}}, "volumeName": name},
    }
    return [volume, pvc] if with_claim else [volume]
