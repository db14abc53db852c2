"""The repository layout keeps the standard library's `operator` importable and the packages findable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_operator_from_the_repo_root_is_the_standard_library() -> None:
    code = "import operator, sys; print(operator.__file__); assert hasattr(operator, 'itemgetter')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "site-packages" not in out.stdout and str(ROOT / "operator") not in out.stdout


def test_component_packages_import_from_the_repo_root() -> None:
    code = "import genjob, genjob_operator, genjob_worker, genjob_api; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_no_component_folder_is_itself_a_package() -> None:
    for folder in ("operator", "worker", "api"):
        assert not (ROOT / folder / "__init__.py").exists()


def test_product_packages_hold_no_test_helpers() -> None:
    """Test harnesses live in tests/support; the four packages never import them."""
    packages = [
        ROOT / "genjob",
        ROOT / "api/genjob_api",
        ROOT / "operator/genjob_operator",
        ROOT / "worker/genjob_worker",
    ]
    for package in packages:
        assert not (package / "testing.py").exists(), package
        for path in package.rglob("*.py"):
            assert "tests.support" not in path.read_text(), path


def test_every_type_ignore_says_why() -> None:
    """mypy (strict) checks the four packages: an ignore there names its code and its reason.
    tests/ and bench/ are not type-checked, so an ignore there would be a dead comment."""
    import re

    checked = ["genjob", "api/genjob_api", "operator/genjob_operator", "worker/genjob_worker"]
    for folder in [*checked, "tests", "bench"]:
        for path in (ROOT / folder).rglob("*.py"):
            if "externalscaler" in path.parts or path == Path(__file__):
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if "type: ignore" not in line:
                    continue
                where = f"{path.relative_to(ROOT)}:{number}"
                assert folder in checked, f"{where}: not type-checked, drop the ignore"
                assert re.search(r"type: ignore\[[\w, -]+\]\s+#\s*\S", line), f"{where}: say why"
