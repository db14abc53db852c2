"""Validation against the test cluster: simulated vs measured cold-start waits.

A measurement file (JSON) is what a cold-start bench run observed for one configuration:

    {
      "source": "bench/coldstart.py on the test cluster, 2026-12-03, push activation, node to provision",
      "scenario": "coldstart-push.yaml",        # a scenario file (relative to this file) or a mapping
      "measured_wait_seconds": [4.1, 3.8, ...]  # submit -> job claimed, one per cold start
    }

The scenario describes the same workload and settings (environment: test_cluster, the pod
runner's model-load delay as model_load_seconds, the chart values the bench set). The check
passes when the simulated p50 and p95 are each within `tolerance` (20%) of the measured ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from genjob.sim.inputs import load_calibration, load_catalog
from genjob.sim.model import simulate
from genjob.sim.results import waits
from genjob.sim.scenario import Scenario, load_scenario

TOLERANCE = 0.20


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1)
    scenario: str | dict[str, Any]
    measured_wait_seconds: list[float] = Field(min_length=2)


class Comparison(BaseModel):
    source: str
    measured: dict[str, float]
    simulated: dict[str, float]
    relative_error: dict[str, float]
    tolerance: float
    passed: bool


def load_measurement(path: str | Path) -> tuple[Measurement, Scenario]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"measurement file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"measurement file {path} is not JSON: {exc}") from None
    measurement = Measurement.model_validate(data)
    if isinstance(measurement.scenario, str):
        scenario = load_scenario(path.parent / measurement.scenario)
    else:
        scenario = Scenario.model_validate({**measurement.scenario, "base_dir": path.parent})
    return measurement, scenario


def _p50_p95(values: list[float]) -> dict[str, float]:
    p50, p95 = np.percentile(np.asarray(values, dtype=float), [50, 95])
    return {"p50": float(p50), "p95": float(p95)}


def compare(measurement: Measurement, scenario: Scenario, tolerance: float = TOLERANCE) -> Comparison:
    run = simulate(scenario, load_catalog(), load_calibration(scenario.environment, scenario.calibration))
    simulated_waits = waits(run)
    if len(simulated_waits) < 2:
        raise ValueError(
            f"scenario {scenario.name!r} produced {len(simulated_waits)} jobs; a comparison needs 2+"
        )
    measured, simulated = _p50_p95(measurement.measured_wait_seconds), _p50_p95(simulated_waits)
    errors = {
        k: abs(simulated[k] - measured[k]) / measured[k] if measured[k] else abs(simulated[k])
        for k in measured
    }
    return Comparison(
        source=measurement.source,
        measured=measured,
        simulated=simulated,
        relative_error=errors,
        tolerance=tolerance,
        passed=all(e <= tolerance for e in errors.values()),
    )
