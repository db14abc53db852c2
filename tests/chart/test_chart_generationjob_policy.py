"""The GenerationJob tenancy ValidatingAdmissionPolicy renders by default with the chart's
tenancy settings (tenant label, gateway namespace template, owner namespaces, the operator's
ServiceAccount) and is absent when `operator.jobPolicy.enabled` is off. Its behaviour on a real
API server: tests/cluster/test_cluster_generationjob_policy.py."""

from __future__ import annotations

from types import ModuleType

import yaml


def _policy(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["metadata"]["name"].endswith("-generationjob-tenancy")]


def test_policy_carries_the_charts_tenancy_settings(chartlib: ModuleType) -> None:
    sets = [
        "operator.tenantLabel=example.com/team",
        "api.namespaceTemplate=jobs-{tenant}-x",
        "operator.serviceAccount.name=genjob-op",
    ]
    docs = chartlib.objects(
        chartlib.render(sets=sets, extra=["--set-json", 'operator.ownerNamespaces={"gw": ["*"]}'])
    )
    policy = chartlib.one(_policy(docs), "ValidatingAdmissionPolicy", "genjob-generationjob-tenancy")
    binding = chartlib.one(_policy(docs), "ValidatingAdmissionPolicyBinding", "genjob-generationjob-tenancy")
    assert binding["spec"] == {"policyName": "genjob-generationjob-tenancy", "validationActions": ["Deny"]}
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert variables["prefix"] == '"jobs-"' and variables["suffix"] == '"-x"'
    assert '"example.com/team"' in variables["namespaceTenant"]
    assert variables["ownerNamespaces"] == '{"gw":["*"]}'
    assert f"system:serviceaccount:{chartlib.NAMESPACE}:genjob-op" in variables["operatorOrAdmin"]
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["generationjobs"] and rule["operations"] == ["CREATE", "UPDATE"]
    config = next(d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {}))
    assert yaml.safe_load(config["data"]["config.yaml"])["operator"]["owner_namespaces"] == {"gw": ["*"]}


def test_policy_is_absent_when_disabled(chartlib: ModuleType) -> None:
    docs = chartlib.objects(chartlib.render(sets=["operator.jobPolicy.enabled=false"]))
    assert not _policy(docs)
