"""requirements.lock (exact pins, `make lock`) agrees with pyproject.toml's ranges: every
requirement of the package and its extras is pinned there, inside its range. A range changed
without re-locking fails here instead of installing something else than CI tested."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def locked_versions() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def declared_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(text) for text in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(text) for text in extra]
    return [req for req in reqs if canonicalize_name(req.name) != "genjob"]


def test_every_declared_requirement_is_locked_inside_its_range() -> None:
    pins = locked_versions()
    for req in declared_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={pins[name]}, outside {req.specifier}: run `make lock`"
        )


def test_pyproject_states_ranges_not_pins() -> None:
    """Exact pins live in the lock; pyproject.toml keeps genjob installable beside other packages."""
    pinned = [str(req) for req in declared_requirements() if any(s.operator == "==" for s in req.specifier)]
    assert pinned == []
