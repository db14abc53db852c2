"""Shared helpers of the chart tests (tests/chart and tests/cluster/test_cluster_chart_*.py).

Renders charts/genjob with the pinned helm (hack/cluster/versions.env, built by `make tools`),
finds the KEDA / Karpenter / Prometheus Operator CRDs that hack/crds/fetch-crds.sh caches, and
turns rendered YAML into objects. Loaded by path (pytest runs with --import-mode=importlib).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "genjob"
CI_VALUES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
MANIFESTS_DIR = REPO_ROOT / "manifests"
KARPENTER_DIR = REPO_ROOT / "karpenter"
FETCH_CRDS = REPO_ROOT / "hack" / "crds" / "fetch-crds.sh"
PROMQL_CHECK = REPO_ROOT / "hack" / "crds" / "promql-check.sh"
RELEASE = "genjob"
NAMESPACE = "genjob"
PLAIN_VALUES = MANIFESTS_DIR / "values-plain.yaml"
PLAIN_RENDERED = MANIFESTS_DIR / "genjob.yaml"
# Writes PLAIN_RENDERED (`make chart-manifests`): helm template of PLAIN_VALUES, ordered for kubectl.
PLAIN_SCRIPT = REPO_ROOT / "hack" / "plain_manifests.py"


class ToolMissing(RuntimeError):
    """A pinned tool or CRD folder is absent; the message says which command provides it."""


def read_versions() -> dict[str, str]:
    versions = {}
    for line in (REPO_ROOT / "hack" / "cluster" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


def tools_cache() -> Path:
    return Path(os.environ.get("GENJOB_TOOLS_CACHE", Path.home() / ".cache" / "genjob" / "tools"))


def helm_binary() -> Path:
    """The pinned helm; GENJOB_HELM overrides the path."""
    if os.environ.get("GENJOB_HELM"):
        return Path(os.environ["GENJOB_HELM"])
    path = tools_cache() / f"helm-{read_versions()['HELM_VERSION']}" / "bin" / "helm"
    if not os.access(path, os.X_OK):
        raise ToolMissing(f"helm is missing at {path}: run `make tools` (hack/cluster/build-tools.sh)")
    return path


def crd_dirs() -> dict[str, Path]:
    """name -> cached CRD folder, fetching (go mod download, pinned) whatever is missing."""
    out = subprocess.run(["bash", str(FETCH_CRDS), "--print-env"], capture_output=True, text=True, check=True)
    dirs = {}
    for line in out.stdout.splitlines():
        key, value = line.split("=", 1)
        dirs[key.removeprefix("GENJOB_CRDS_").lower().replace("_", "-")] = Path(value)
    if not all(d.is_dir() for d in dirs.values()):
        fetched = subprocess.run(["bash", str(FETCH_CRDS)], capture_output=True, text=True)
        if fetched.returncode != 0:
            raise ToolMissing(f"hack/crds/fetch-crds.sh failed:\n{fetched.stderr}")
    return dirs


def promql_check_binary() -> Path:
    """Prometheus's PromQL parser (hack/crds/promql), built and cached by hack/crds/promql-check.sh."""
    out = subprocess.run(
        ["bash", str(PROMQL_CHECK), "--print-env"], capture_output=True, text=True, check=True
    )
    path = Path(out.stdout.strip().split("=", 1)[1])
    if not os.access(path, os.X_OK):
        built = subprocess.run(["bash", str(PROMQL_CHECK)], capture_output=True, text=True)
        if built.returncode != 0:
            raise ToolMissing(f"hack/crds/promql-check.sh failed:\n{built.stderr}")
    return path


def crd_files(*names: str) -> list[Path]:
    dirs = crd_dirs()
    return sorted(p for name in names for p in dirs[name].glob("*.yaml"))


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, check=check)


def render(
    values: Iterable[Path] = (),
    sets: Iterable[str] = (),
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    extra: Iterable[str] = (),
) -> str:
    """`helm template` of the chart; raises CalledProcessError (stderr has helm's message)."""
    args = ["template", release, str(CHART_DIR), "--namespace", namespace]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    return helm(*args, *extra).stdout


def render_plain() -> str:
    """What `make chart-manifests` writes to manifests/genjob.yaml."""
    return subprocess.run(
        [sys.executable, str(PLAIN_SCRIPT), str(helm_binary())], capture_output=True, text=True, check=True
    ).stdout


def render_error(values: Iterable[Path] = (), sets: Iterable[str] = ()) -> str:
    """helm's error output for a render that must fail (AssertionError if it succeeds)."""
    args = ["template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    result = helm(*args, check=False)
    assert result.returncode != 0, f"render unexpectedly succeeded with {list(values)} {list(sets)}"
    return result.stderr


def objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload and bare pod."""
    out = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            out.append((f"Pod/{d['metadata']['name']}", d["spec"]))
    return out


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
