"""Generates the GenerationJob CustomResourceDefinition from the pydantic models.

`python -m genjob.crd` rewrites `manifests/crds/` and `charts/genjob/crds/`; a test
fails when the committed YAML differs from what the models generate, so the CRD and
the models cannot drift. Pydantic's JSON schema is turned into a Kubernetes
structural schema: `$ref`s inlined, `anyOf [T, null]` collapsed to `T`, enums and
limits kept, CEL rules added as `x-kubernetes-validations`.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import yaml

from genjob.jobspec import SPEC_CEL_RULES, GenerationJobSpec, GenerationJobStatus

GROUP = "genjob.io"
VERSION = "v1alpha1"
KIND = "GenerationJob"
PLURAL = "generationjobs"
SINGULAR = "generationjob"
SHORT_NAMES = ["gj"]
CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_FILENAME = f"{CRD_NAME}.yaml"

_KEEP = {
    "type",
    "description",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "default",
    "format",
}

PRINTER_COLUMNS = [
    {"name": "Tier", "type": "string", "jsonPath": ".spec.tier"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progressText"},
    {"name": "Model", "type": "string", "jsonPath": ".status.model"},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
    {"name": "Worker", "type": "string", "jsonPath": ".status.worker", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Convert one pydantic JSON-schema node into a structural OpenAPI v3 schema node."""
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express a union of {len(branches)} types structurally: {node}")
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        if outer.get("default", 0) is None:
            outer.pop("default")
        return _structural({**branches[0], **outer}, defs)
    if "const" in node:
        node = {**node, "enum": [node["const"]]}
    out = {k: copy.deepcopy(v) for k, v in node.items() if k in _KEEP}
    if "enum" in node and "type" not in out:
        out["type"] = "string"
    if out.get("type") == "object":
        props = node.get("properties", {})
        out["properties"] = {name: _structural(p, defs) for name, p in props.items()}
        required = node.get("required")
        if required:
            out["required"] = list(required)
        if not props and "additionalProperties" in node:
            out["additionalProperties"] = _structural(node["additionalProperties"], defs)
    if out.get("type") == "array":
        out["items"] = _structural(node["items"], defs)
    # JSON Schema 2020-12 writes exclusive bounds as numbers; Kubernetes speaks OpenAPI v3.0 (booleans).
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(exclusive), int | float) and not isinstance(out[exclusive], bool):
            out[inclusive] = out.pop(exclusive)
            out[exclusive] = True
    if out.get("type") == "number" and "default" in out and isinstance(out["default"], int):
        out["default"] = float(out["default"])
    return out


def model_schema(model: type[Any]) -> dict[str, Any]:
    """The structural schema of a pydantic model with camelCase field names."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema = _structural(raw, raw.get("$defs", {}))
    schema.pop("description", None)
    return schema


def build_crd() -> dict[str, Any]:
    """The full CRD object for GenerationJob."""
    spec_schema = model_schema(GenerationJobSpec)
    spec_schema["description"] = "What to generate. See docs/generationjob.md."
    spec_schema["x-kubernetes-validations"] = SPEC_CEL_RULES
    status_schema = model_schema(GenerationJobStatus)
    status_schema["description"] = "Reported by the genjob operator."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "genjob", "app.kubernetes.io/part-of": "genjob"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["genjob"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "An image generation (txt2img or img2img) run as a queued job.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    header = "# Generated by `python -m genjob.crd` from genjob/jobspec.py. Do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


CRD_OUTPUTS = [Path("manifests/crds") / CRD_FILENAME, Path("charts/genjob/crds") / CRD_FILENAME]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the GenerationJob CRD generated from the models.")
    parser.add_argument("--root", type=Path, default=Path("."), help="Repository root.")
    args = parser.parse_args(argv)
    text = render_crd_yaml()
    for rel in CRD_OUTPUTS:
        path = args.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
