"""The worker-own-pod ValidatingAdmissionPolicy renders when `worker.ownPodPolicy.enabled` (the
default) and is absent when it is off; it matches the worker ServiceAccount the workers run as.
Its behaviour on a real API server: tests/cluster/test_cluster_worker_pod_policy.py."""

from __future__ import annotations

from types import ModuleType

KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def policy_objects(docs: list[dict]) -> list[dict]:
    """The worker-own-pod policy and binding (the chart has other policies)."""
    return [d for d in docs if d["kind"] in KINDS and d["metadata"]["name"].endswith("-worker-own-pod")]


def test_policy_renders_by_default_for_the_worker_serviceaccount(chartlib: ModuleType, rendered) -> None:
    docs = rendered["default"]
    [role] = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-worker")]
    name = role["metadata"]["name"] + "-own-pod"  # <fullname>-worker-own-pod
    policy = chartlib.one(docs, "ValidatingAdmissionPolicy", name)
    binding = chartlib.one(docs, "ValidatingAdmissionPolicyBinding", name)
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert binding["spec"] == {"policyName": name, "validationActions": ["Deny"]}
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert policy["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"

    worker = next(d for d in docs if d["kind"] == "Deployment" and "-worker-" in d["metadata"]["name"])
    sa = worker["spec"]["template"]["spec"]["serviceAccountName"]
    [condition] = policy["spec"]["matchConditions"]
    assert f'"system:serviceaccount:{chartlib.NAMESPACE}:{sa}"' in condition["expression"]
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["pods", "pods/*"] and rule["operations"] == ["*"]
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert "'authentication.kubernetes.io/pod-name'" in variables["tokenPodName"]
    assert "'authentication.kubernetes.io/pod-uid'" in variables["tokenPodUID"]
    assert "karpenter.sh/do-not-disrupt" in variables["busyKeys"]
    assert "controller.kubernetes.io/pod-deletion-cost" in variables["busyKeys"]
    assert all(v.get("messageExpression") for v in policy["spec"]["validations"])


def test_policy_follows_a_custom_serviceaccount_name(chartlib: ModuleType) -> None:
    docs = chartlib.objects(chartlib.render(sets=["worker.serviceAccount.name=gpu-worker"]))
    [policy] = [d for d in policy_objects(docs) if d["kind"] == "ValidatingAdmissionPolicy"]
    assert (
        f'"system:serviceaccount:{chartlib.NAMESPACE}:gpu-worker"'
        in policy["spec"]["matchConditions"][0]["expression"]
    )


def test_policy_is_absent_when_disabled(chartlib: ModuleType) -> None:
    docs = chartlib.objects(chartlib.render(sets=["worker.ownPodPolicy.enabled=false"]))
    assert not policy_objects(docs)
    assert any(d["kind"] == "Role" for d in docs), "only the policy goes; the worker Role stays"


def test_policy_is_on_in_every_ci_variant(rendered) -> None:
    for variant, docs in rendered.items():
        assert sorted(d["kind"] for d in policy_objects(docs)) == sorted(KINDS), variant


def test_clusters_older_than_1_30_get_a_clear_error(chartlib: ModuleType) -> None:
    """ValidatingAdmissionPolicy v1 is GA since Kubernetes 1.30; older clusters opt out explicitly."""
    args = ["template", chartlib.RELEASE, str(chartlib.CHART_DIR), "--kube-version", "1.29.4"]
    result = chartlib.helm(*args, check=False)
    assert result.returncode != 0
    assert "set worker.ownPodPolicy.enabled=false" in result.stderr, result.stderr
    off = ["--set", "worker.ownPodPolicy.enabled=false", "--set", "operator.jobPolicy.enabled=false"]
    assert chartlib.helm(*args, *off).returncode == 0
