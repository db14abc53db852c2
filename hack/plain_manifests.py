"""Render manifests/genjob.yaml: `helm template` of the chart's defaults, in an order that
`kubectl apply -f` can create.

helm prints hooks last and kinds it does not know (KEDA's) alphabetically, so the
TriggerAuthentications come after the ScaledObjects that name them. kubectl applies a file in
order, and KEDA builds a scaler whose TriggerAuthentication does not exist yet without its
credentials (the push scaler then dials the operator without TLS until the ScaledObject
changes). This script moves every TriggerAuthentication before the first ScaledObject and keeps
every other document where helm printed it.

Usage: python hack/plain_manifests.py HELM_BINARY > manifests/genjob.yaml
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
HELM_ARGS = [
    "template", "genjob", str(REPO_ROOT / "charts" / "genjob"), "--namespace", "genjob", "--skip-tests",
    "-f", str(REPO_ROOT / "manifests" / "values-plain.yaml"),
]  # fmt: skip
SEPARATOR = "---\n"
DOCUMENT_START = re.compile(r"^---\n", re.MULTILINE)


def _kind(document: str) -> str | None:
    parsed = yaml.safe_load(document)
    return parsed.get("kind") if isinstance(parsed, dict) else None


def order_for_kubectl(rendered: str) -> str:
    """helm's output with the TriggerAuthentications moved before the first ScaledObject."""
    head, *documents = DOCUMENT_START.split(rendered)
    kinds = [_kind(d) for d in documents]
    auths = [d for d, kind in zip(documents, kinds, strict=True) if kind == "TriggerAuthentication"]
    others = [d for d, kind in zip(documents, kinds, strict=True) if kind != "TriggerAuthentication"]
    other_kinds = [kind for kind in kinds if kind != "TriggerAuthentication"]
    at = other_kinds.index("ScaledObject") if "ScaledObject" in other_kinds else len(others)
    return SEPARATOR.join([head, *others[:at], *auths, *others[at:]])


def main(helm: str) -> None:
    rendered = subprocess.run([helm, *HELM_ARGS], capture_output=True, text=True, check=True).stdout
    sys.stdout.write(order_for_kubectl(rendered))


if __name__ == "__main__":
    main(sys.argv[1])
