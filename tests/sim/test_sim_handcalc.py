"""Validation (a): both designs' hand arithmetic, recomputed from their own inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from genjob.sim.handcalc import evaluate, load_design, reproduce
from genjob.sim.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "genjob/sim/scenarios"


def _results(name: str) -> dict[str, tuple[float, float | None, bool | None]]:
    design = load_design(SCENARIOS / name)
    assert design is not None
    return {r.name: (r.computed, r.stated, r.matches) for r in reproduce(design)}


def test_sqs_asg_design_reproduces_928_and_850_and_shows_its_slips() -> None:
    r = _results("design-sqs-asg-1k-sdxl.yaml")
    assert r["scale_to_zero_usd_per_month"] == (pytest.approx(927.54), 927.54, True)
    assert r["baseline_usd_per_month"] == (pytest.approx(850.0), 850.0, True)
    assert r["peak_usd_per_hour"][0] == pytest.approx(5.11825) and r["peak_usd_per_hour"][2]
    mismatched = [name for name, (_, _, ok) in r.items() if ok is False]
    assert mismatched == ["sqs_usd_per_peak_hour"]  # 1000 x $0.0000004 is $0.0004, not $0.004
    assert r["gpu_hours_needed_per_peak_hour"][0] == pytest.approx(8.3333, rel=1e-4)
    assert r["baseline_images_per_hour"][0] == 240  # the always-on baseline cannot carry 1,000/h


def test_million_image_design_hours_follow_but_its_dollars_do_not() -> None:
    r = _results("design-1m-images-g5-2xlarge.yaml")
    assert r["gpu_hours"] == (pytest.approx(416.6667, rel=1e-6), 416.67, True)
    computed, stated, matches = r["usd"]
    assert (round(computed, 2), stated, matches) == (207.0, 226.0, False)


def test_design_scenarios_are_also_simulation_scenarios() -> None:
    for path in SCENARIOS.glob("design-*.yaml"):
        assert load_scenario(path).workload


@pytest.mark.parametrize(
    "formula",
    ["__import__('os').system('true')", "a.__class__", "[1, 2]", "round(a)", "a ** 2", "lambda: 1"],
)
def test_formulas_evaluate_nothing_but_arithmetic(formula: str) -> None:
    with pytest.raises(ValueError, match=r"allowed|not an arithmetic"):
        evaluate(formula, {"a": 2.0})


def test_a_formula_with_an_unknown_name_says_which() -> None:
    with pytest.raises(ValueError, match="unknown name 'b'"):
        evaluate("a * b", {"a": 1.0})
    assert evaluate("round(a / 3, 2) - -1", {"a": 1.0}) == pytest.approx(1.33)
