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
