"""A wheel holds every package one level down (no top-level `operator`) plus the Lua scripts."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_the_packages_and_scripts(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("genjob-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("genjob-")}
    assert tops == {"genjob", "genjob_operator", "genjob_worker", "genjob_api"}
    assert "genjob/queue/lua/claim.lua" in names and "genjob/queue/lua/_prelude.lua" in names
    assert "genjob_api/lua/submit.lua" in names and "genjob_api/lua/ratelimit.lua" in names
    assert {"genjob/sim/data/calibration.yaml", "genjob/sim/scenarios/sdxl-1k-per-hour.yaml"} <= set(names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "genjob = genjob.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert not any(n.startswith(("tests/", "bench/", "operator/")) for n in names)
