"""Offline schema checks: rendered KEDA / Prometheus Operator objects, karpenter/ YAML and the
GenerationJob examples against the openAPIV3Schema of the pinned CRDs (hack/crds/fetch-crds.sh).

Unknown fields are errors here, as with `kubectl apply` (strict field validation). CEL rules
(x-kubernetes-validations) are not evaluated offline: the cluster tier's server-side dry-run does
that (tests/cluster/test_cluster_chart_install.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

VARIANTS = ["default", "all-tiers", "no-keda", "external-redis", "minimal", "redis-sentinel"]


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI v3 (structural) -> JSON Schema that rejects unknown fields like the API server does."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("nullable"):
                t = node.get("type")
                if isinstance(t, str):
                    node["type"] = [t, "null"]
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # metadata is validated by the API server itself, not by the CRD schema
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return schema


def load_crd_schemas(files: list[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON Schema, for every served version of every CRD file."""
    out = {}
    for path in files:
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                out[(f"{group}/{version['name']}", kind)] = _strict(version["schema"]["openAPIV3Schema"])
    return out


@pytest.fixture(scope="session")
def crd_schemas(chartlib) -> dict[tuple[str, str], dict[str, Any]]:
    files = chartlib.crd_files("keda", "karpenter-aws", "prometheus-operator")
    files.append(chartlib.MANIFESTS_DIR / "crds" / "generationjobs.genjob.io.yaml")
    return load_crd_schemas(files)


def errors_of(schemas, obj: dict[str, Any]) -> list[str]:
    schema = schemas[(obj["apiVersion"], obj["kind"])]
    # OpenAPI v3.0 schemas follow draft 4 semantics (boolean exclusiveMinimum/Maximum).
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def test_the_pinned_crds_are_present(crd_schemas) -> None:
    for key in [
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
        ("karpenter.sh/v1", "NodePool"),
        ("karpenter.k8s.aws/v1", "EC2NodeClass"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("genjob.io/v1alpha1", "GenerationJob"),
    ]:
        assert key in crd_schemas, key


def test_strict_validation_catches_an_unknown_field(crd_schemas, rendered) -> None:
    """The offline check is not vacuous: a misspelt ScaledObject field is an error."""
    so = copy.deepcopy(next(d for d in rendered["default"] if d["kind"] == "ScaledObject"))
    so["spec"]["advanced"]["scalingModifier"] = so["spec"]["advanced"].pop("scalingModifiers")
    assert any("scalingModifier" in e for e in errors_of(crd_schemas, so))


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_custom_resources_match_their_crds(crd_schemas, rendered, variant) -> None:
    checked = 0
    for obj in rendered[variant]:
        if (obj["apiVersion"], obj["kind"]) in crd_schemas:
            assert errors_of(crd_schemas, obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"
            checked += 1
    if variant != "no-keda":
        assert checked > 0


def test_karpenter_yaml_matches_the_karpenter_crds(chartlib, crd_schemas) -> None:
    kinds = []
    for path in sorted(chartlib.KARPENTER_DIR.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj.get("apiVersion", "").startswith("karpenter."):
                assert errors_of(crd_schemas, obj) == [], f"{path.name}: {obj['kind']}"
                kinds.append(obj["kind"])
    assert sorted(kinds) == ["EC2NodeClass", "NodePool", "NodePool"]


def _examples(chartlib, kind: str) -> list[Path]:
    return sorted((chartlib.MANIFESTS_DIR / "examples" / kind).glob("*.yaml"))


def test_valid_examples_match_the_generationjob_crd(chartlib, crd_schemas) -> None:
    examples = _examples(chartlib, "valid")
    assert len(examples) >= 3
    for path in examples:
        obj = yaml.safe_load(path.read_text())
        assert errors_of(crd_schemas, obj) == [], path.name


def test_invalid_examples_declare_their_error(chartlib, crd_schemas) -> None:
    """Each invalid example states its error; those the schema alone accepts must be CEL rules."""
    crd = yaml.safe_load((chartlib.MANIFESTS_DIR / "crds" / "generationjobs.genjob.io.yaml").read_text())
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    cel_messages = [rule["message"] for rule in spec_schema.get("x-kubernetes-validations", [])]
    examples = _examples(chartlib, "invalid")
    assert len(examples) >= 5
    for path in examples:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# expect-error: "), path.name
        expected = first.removeprefix("# expect-error: ")
        if not errors_of(crd_schemas, yaml.safe_load(path.read_text())):
            assert any(expected in m for m in cel_messages), (
                f"{path.name}: passes the schema, no CEL rule says {expected!r}"
            )
