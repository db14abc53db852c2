"""Validation (c): simulated vs measured cold-start waits, p50 and p95 within 20%."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genjob.cli import main
from genjob.sim.coldstart import compare, load_measurement
from genjob.sim.inputs import load_calibration, load_catalog
from genjob.sim.model import simulate
from genjob.sim.results import waits
from genjob.sim.scenario import load_scenario

BUNDLED = Path(__file__).resolve().parents[2] / "genjob/sim/scenarios/coldstart-test-cluster.yaml"


def _simulated() -> list[float]:
    sc = load_scenario(BUNDLED)
    return waits(simulate(sc, load_catalog(), load_calibration(sc.environment, sc.calibration)))


def _measurement(tmp_path: Path, values: list[float]) -> Path:
    (tmp_path / "coldstart-test-cluster.yaml").write_text(BUNDLED.read_text())
    path = tmp_path / "measured.json"
    path.write_text(
        json.dumps(
            {"source": "test", "scenario": "coldstart-test-cluster.yaml", "measured_wait_seconds": values}
        )
    )
    return path


def test_every_bundled_cold_start_is_cold_and_spread_over_a_poll() -> None:
    simulated = _simulated()
    assert len(simulated) == 24
    floor = 2 + 5  # kwok node Ready, container start + the emulated model load: at least this much
    assert min(simulated) > floor
    assert max(simulated) - min(simulated) > 2  # the polling phase spreads them


@pytest.mark.parametrize(
    ("factor", "passes"), [(1.0, True), (1.15, True), (0.87, True), (1.3, False), (0.7, False)]
)
def test_within_20_percent_passes_and_beyond_fails(tmp_path: Path, factor: float, passes: bool) -> None:
    measured = [w * factor for w in _simulated()]
    result = compare(*load_measurement(_measurement(tmp_path, measured)))
    assert result.passed is passes
    p50 = float(np.percentile(measured, 50))
    assert result.measured["p50"] == pytest.approx(p50)


def test_cli_exit_code_says_pass_or_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--coldstart", str(_measurement(tmp_path, _simulated()))]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["sim", "--coldstart", str(_measurement(tmp_path, [w * 2 for w in _simulated()]))]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not JSON"),
        ('{"source": "x", "scenario": "s.yaml", "measured_wait_seconds": [1]}', "at least 2"),
    ],
)
def test_a_bad_measurement_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_measurement(path)


MEASURED = sorted((BUNDLED.parent / "measured").glob("coldstart-*.json"))


def test_the_bench_measurements_of_every_configuration_ship() -> None:
    """bench/coldstart.py --measurements: 3 activation settings x node present / to provision."""
    assert len(MEASURED) == 6, MEASURED


@pytest.mark.parametrize("path", MEASURED, ids=lambda p: p.stem)
def test_the_simulator_matches_the_test_clusters_cold_starts_within_20_percent(path: Path) -> None:
    """Validation (c): the simulator, with the calibration the test cluster measured, against the
    cold starts bench/coldstart.py measured there (each file's `source` says when and how)."""
    measurement, scenario = load_measurement(path)
    result = compare(measurement, scenario)
    assert result.passed, result.model_dump()
