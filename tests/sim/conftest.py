"""Fixtures of the simulator tests: small scenarios built in code, and running them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from genjob.sim.inputs import load_calibration, load_catalog
from genjob.sim.model import RunData, simulate
from genjob.sim.scenario import Scenario, _deep_merge

BASE: dict[str, Any] = {
    "name": "small",
    "seed": 7,
    "days": 1,
    "spot_interruptions_per_hour": 0.0,
    "workload": [
        {
            "tier": "pro",
            "arrivals": {"windows": [{"start_hour": 1, "hours": 1, "rate_per_hour": 120}]},
            "job": {"model": "sd15", "width": 512, "height": 512, "steps": 50},
        }
    ],
    "pools": {"pro": {"nodeSelector": {"node.kubernetes.io/instance-type": "g5.xlarge"}}},
}


@pytest.fixture
def scenario() -> Callable[..., Scenario]:
    """A one-hour pro workload (120 SD 1.5 jobs) with `changes` deep-merged in."""

    def build(**changes: Any) -> Scenario:
        data = copy.deepcopy(BASE)
        _deep_merge(data, changes)
        return Scenario.model_validate(data)

    return build


@pytest.fixture
def run() -> Callable[[Scenario], RunData]:
    def go(sc: Scenario) -> RunData:
        return simulate(sc, load_catalog(), load_calibration(sc.environment, sc.calibration))

    return go
