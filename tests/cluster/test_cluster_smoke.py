"""Smoke tests of the cluster tier: the control plane, the genjob CRD and kwok GPU nodes.

Each test ensures one thing a later tier relies on: the binaries report their pinned
versions, the CRD serves GenerationJobs to kubectl and the Python client (with the
status subresource and schema validation), and kwok nodes shaped like Karpenter's g5
nodes take GPU pods that tolerate their taint and only those.
"""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from genjob.crd import GROUP, PLURAL, VERSION

from .conftest import wait_for

pytestmark = pytest.mark.cluster

GPU = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU, "value": "true", "effect": "NoSchedule"}


def generation_job(name: str, **spec) -> dict:
    body = {"tier": "free", "prompt": "a red fox", "width": 512, "height": 512, **spec}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GenerationJob",
        "metadata": {"name": name},
        "spec": body,
    }


@pytest.fixture
def namespace(cluster) -> str:
    """A fresh namespace whose default ServiceAccount exists (so pods can be created)."""
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(
        f"default ServiceAccount in {name}",
        lambda: cluster.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode == 0,
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_binaries_report_pinned_versions(cluster):
    """kube-apiserver, kubectl and helm were linked with their real version strings."""
    versions = cluster.tools.versions
    reported = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert reported["serverVersion"]["gitVersion"] == versions["KUBERNETES_VERSION"]
    assert reported["clientVersion"]["gitVersion"] == versions["KUBERNETES_VERSION"]
    short = cluster.helm("version", "--short")
    assert short.stdout.startswith(versions["HELM_VERSION"])
    assert json.loads(cluster.helm("list", "-A", "-o", "json").stdout) == []


def test_api_server_publishes_aggregation_layer_config(cluster):
    """The front-proxy CA is published for aggregated API servers (KEDA's metrics server)."""
    config_map = json.loads(
        cluster.kubectl(
            "-n", "kube-system", "get", "configmap", "extension-apiserver-authentication", "-o", "json"
        ).stdout
    )
    data = config_map["data"]
    assert "BEGIN CERTIFICATE" in data["requestheader-client-ca-file"]
    assert json.loads(data["requestheader-allowed-names"]) == ["front-proxy-client"]
    assert "BEGIN CERTIFICATE" in data["client-ca-file"]


def test_generationjob_crud_with_kubectl(cluster, genjob_crd, namespace):
    """create, get, list, patch status and delete a GenerationJob with kubectl."""
    k = lambda *a, **kw: cluster.kubectl("-n", namespace, *a, **kw)  # noqa: E731
    k("apply", "-f", "-", input=yaml.safe_dump(generation_job("fox")))

    got = json.loads(k("get", "gj", "fox", "-o", "json").stdout)
    assert got["spec"]["prompt"] == "a red fox" and got["spec"]["width"] == 512

    listed = json.loads(k("get", "generationjobs", "-o", "json").stdout)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["fox"]

    k(
        "patch",
        "gj",
        "fox",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Queued", "attempts": 1}}),
    )
    status = json.loads(k("get", "gj", "fox", "-o", "jsonpath={.status}").stdout)
    assert status["phase"] == "Queued" and status["attempts"] == 1

    k("delete", "gj", "fox", "--wait=true")
    missing = k("get", "gj", "fox", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_generationjob_crud_with_python_client(cluster, genjob_crd, namespace):
    """The same lifecycle through the kubernetes Python client the operator uses."""
    from kubernetes import client

    with cluster.api_client() as api_client:
        api = client.CustomObjectsApi(api_client)
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, generation_job("owl"))
        got = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "owl")
        assert got["spec"]["tier"] == "free"

        listed = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        assert [item["metadata"]["name"] for item in listed["items"]] == ["owl"]

        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "owl", {"status": {"phase": "Running"}}
        )
        got = api.get_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "owl")
        assert got["status"]["phase"] == "Running"

        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "owl")
        wait_for(
            "owl to be deleted",
            lambda: not api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"],
        )
        with pytest.raises(client.ApiException) as missing:
            api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "owl")
        assert missing.value.status == 404


def test_invalid_generationjob_is_refused_naming_the_field(cluster, genjob_crd, namespace):
    """width 513 (not a multiple of 8) is refused by the API server, naming spec.width."""
    bad = generation_job("crooked", width=513)
    result = cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert result.returncode != 0
    assert "spec.width" in result.stderr

    from kubernetes import client

    with cluster.api_client() as api_client:
        api = client.CustomObjectsApi(api_client)
        with pytest.raises(client.ApiException) as refused:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, bad)
        assert refused.value.status == 422
        assert "spec.width" in refused.value.body
        assert api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"] == []


def test_generationjob_spec_is_immutable_after_creation(cluster, genjob_crd, namespace):
    """After admission a user must not change who the job runs as or which tier it uses
    (owner, tier, priority): the API server refuses any change of spec (CEL self == oldSelf);
    metadata and status stay writable."""
    from kubernetes import client

    with cluster.api_client() as api_client:
        api = client.CustomObjectsApi(api_client)
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, generation_job("fixed"))
        for change in ({"owner": "someone-else"}, {"tier": "enterprise"}, {"priority": 9}):
            with pytest.raises(client.ApiException) as refused:
                api.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, "fixed", {"spec": change}
                )
            assert refused.value.status == 422 and "spec is immutable" in refused.value.body
        api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "fixed", {"metadata": {"labels": {"team": "a"}}}
        )
        got = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "fixed")
        assert "owner" not in got["spec"] and got["spec"]["tier"] == "free"
        assert got["metadata"]["labels"]["team"] == "a"
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "fixed")


def add_g5_node(cluster, name: str) -> None:
    """A kwok node labelled and shaped like a Karpenter-provisioned g5.xlarge."""
    cluster.add_kwok_node(
        name,
        labels={
            "node.kubernetes.io/instance-type": "g5.xlarge",
            "karpenter.sh/capacity-type": "spot",
            "karpenter.k8s.aws/instance-family": "g5",
            "karpenter.k8s.aws/instance-gpu-name": "a10g",
            "topology.kubernetes.io/zone": "us-east-1a",
        },
        capacity={"cpu": "4", "memory": "16Gi", "pods": "58", GPU: "1", "ephemeral-storage": "100Gi"},
        taints=[GPU_TAINT],
    )


def gpu_pod_spec(*, tolerate: bool) -> dict:
    spec = {
        "containers": [
            {
                "name": "worker",
                "image": "genjob/worker:test",
                "resources": {"requests": {"cpu": "1"}, "limits": {GPU: "1"}},
            }
        ],
        "nodeSelector": {"node.kubernetes.io/instance-type": "g5.xlarge"},
    }
    if tolerate:
        spec["tolerations"] = [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
    return spec


def test_gpu_pod_runs_on_tainted_g5_node_only_with_toleration(cluster, namespace):
    """A Deployment's GPU pod that tolerates the taint runs on the g5 node; one without stays Pending."""
    from kubernetes import client

    node_name = f"kwok-g5-{uuid.uuid4().hex[:6]}"
    add_g5_node(cluster, node_name)
    with cluster.api_client() as api_client:
        core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
        wait_for(
            f"node {node_name} Ready",
            lambda: any(
                c.type == "Ready" and c.status == "True"
                for c in core.read_node(node_name).status.conditions or []
            ),
        )
        assert core.read_node(node_name).status.allocatable[GPU] == "1"

        # First the pod without the toleration, while the node's GPU is still free:
        # only the taint can keep it off the node.
        core.create_namespaced_pod(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "no-toleration"},
                "spec": gpu_pod_spec(tolerate=False),
            },
        )
        scheduled = wait_for(
            "the scheduler to report the pod unschedulable",
            lambda: [
                c
                for c in core.read_namespaced_pod("no-toleration", namespace).status.conditions or []
                if c.type == "PodScheduled" and c.status == "False"
            ],
        )
        assert scheduled[0].reason == "Unschedulable"
        assert "untolerated taint" in scheduled[0].message

        labels = {"app": "gpu-worker"}
        apps.create_namespaced_deployment(
            namespace,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "gpu-worker"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": gpu_pod_spec(tolerate=True)},
                },
            },
        )
        running = wait_for(
            "the Deployment's pod to run",
            lambda: [
                p
                for p in core.list_namespaced_pod(namespace, label_selector="app=gpu-worker").items
                if p.status.phase == "Running"
            ],
        )
        assert running[0].spec.node_name == node_name
        wait_for(
            "the Deployment to be available",
            lambda: apps.read_namespaced_deployment("gpu-worker", namespace).status.available_replicas == 1,
        )

        pod = core.read_namespaced_pod("no-toleration", namespace)
        assert pod.status.phase == "Pending" and not pod.spec.node_name


def test_helm_installs_and_uninstalls_a_chart(cluster, namespace, tmp_path):
    """helm (built here) installs a chart into the test cluster and removes it again."""
    chart = tmp_path / "hello"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: hello\nversion: 0.1.0\nkubeVersion: '>=1.30.0-0'\n"
    )
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")

    cluster.helm("install", "demo", str(chart), "-n", namespace, "--set", "greeting=hi", "--wait")
    data = json.loads(
        cluster.kubectl("-n", namespace, "get", "configmap", "demo-greeting", "-o", "json").stdout
    )
    assert data["data"] == {"greeting": "hi"}

    cluster.helm("uninstall", "demo", "-n", namespace, "--wait")
    gone = cluster.kubectl("-n", namespace, "get", "configmap", "demo-greeting", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
