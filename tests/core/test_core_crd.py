"""The committed CRD YAML is exactly what the models generate, and it is a structural schema."""

from __future__ import annotations

from pathlib import Path

import yaml

from genjob.crd import CRD_OUTPUTS, build_crd, render_crd_yaml
from genjob.jobspec import GenerationJobSpec

ROOT = Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models() -> None:
    expected = render_crd_yaml()
    for rel in CRD_OUTPUTS:
        assert (ROOT / rel).read_text() == expected, f"{rel} is stale: run `python -m genjob.crd`"


def _walk(node: dict, path: str = "") -> list[str]:
    """Paths of schema nodes that are not structural (no type, or a union left over)."""
    bad = []
    if "anyOf" in node or "oneOf" in node or "$ref" in node:
        bad.append(path)
    if "type" not in node:
        bad.append(path)
    # OpenAPI v3.0 (what Kubernetes validates against) only has boolean exclusive bounds.
    if any(not isinstance(node.get(k, False), bool) for k in ("exclusiveMinimum", "exclusiveMaximum")):
        bad.append(f"{path} (numeric exclusive bound)")
    for name, child in node.get("properties", {}).items():
        bad += _walk(child, f"{path}.{name}")
    if "items" in node:
        bad += _walk(node["items"], f"{path}[]")
    return bad


def test_schema_is_structural_and_covers_every_spec_field() -> None:
    crd = build_crd()
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    assert _walk(schema) == []
    spec = schema["properties"]["spec"]
    wire_names = {f.alias for f in GenerationJobSpec.model_fields.values()}
    assert set(spec["properties"]) == wire_names
    assert spec["required"] == ["tier", "prompt"]
    assert spec["properties"]["width"]["multipleOf"] == 8
    assert spec["properties"]["strength"]["minimum"] == 0
    assert spec["properties"]["strength"]["exclusiveMinimum"] is True
    assert spec["x-kubernetes-validations"][0]["rule"] == "!has(self.strength) || has(self.initImage)"
    assert version["subresources"] == {"status": {}}
    assert {c["name"] for c in version["additionalPrinterColumns"]} >= {
        "Tier",
        "Phase",
        "Progress",
        "Model",
        "Age",
    }
    assert crd["spec"]["names"]["shortNames"] == ["gj"]


def test_rendered_yaml_parses_back() -> None:
    assert yaml.safe_load(render_crd_yaml()) == build_crd()
