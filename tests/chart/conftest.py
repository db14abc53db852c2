"""Fixtures of the chart tests: the helpers in chart_testlib.py, loaded by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_NAME = "genjob_chart_testlib"


def load_chart_testlib() -> ModuleType:
    if _NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).with_name("chart_testlib.py"))
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]


@pytest.fixture(scope="session")
def chartlib() -> ModuleType:
    lib = load_chart_testlib()
    try:
        lib.helm_binary()
    except lib.ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    return lib


@pytest.fixture(scope="session")
def rendered(chartlib: ModuleType) -> dict[str, list[dict]]:
    """Objects of every variant: "default" plus each ci/*-values.yaml by file stem."""
    out = {"default": chartlib.objects(chartlib.render())}
    for values in chartlib.CI_VALUES:
        out[values.name.removesuffix("-values.yaml")] = chartlib.objects(chartlib.render([values]))
    return out
