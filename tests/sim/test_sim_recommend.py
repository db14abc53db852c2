"""`--recommend`: the cheapest values meeting the p95 target, as a fragment the chart accepts."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from genjob.sim.inputs import load_calibration, load_catalog
from genjob.sim.model import RunData
from genjob.sim.recommend import SearchSpace, recommend, values_fragment
from genjob.sim.results import summarize
from genjob.sim.scenario import Scenario, _deep_merge

ROOT = Path(__file__).resolve().parents[2]
# a small search space keeps each test to a few dozen one-day simulations
SPACE = SearchSpace(
    capacity_types=("spot",),
    instance_types=("g5.xlarge",),
    polling_intervals=(15,),
    cooldowns=(60, 300),
    min_replicas=(0, 1),
    max_replicas=(4,),
    batch_sizes=(1,),
)
Build = Callable[..., Scenario]
Run = Callable[[Scenario], RunData]


def _tiny(scenario: Build) -> Scenario:
    # 40 SD 1.5 jobs in 20 minutes: quick to simulate dozens of times
    return scenario(
        workload=[
            {
                "tier": "pro",
                "arrivals": {"windows": [{"start_hour": 1, "hours": 0.33, "rate_per_hour": 120}]},
                "job": {"model": "sd15", "width": 512, "height": 512, "steps": 50},
            }
        ],
        pools={"pro": {"keda": {"minReplicas": 1, "maxReplicas": 4}}},
    )


def test_recommendation_meets_the_target_for_less_than_the_starting_values(scenario: Build, run: Run) -> None:
    start = _tiny(scenario)
    start_cost = summarize(run(start))["system"]["usd_per_month"]
    result = recommend(start, {"pro": 400.0}, load_catalog(), load_calibration(), SPACE, check_seeds=1)
    assert result.meets
    assert result.best.p95["pro"] <= 400.0
    assert result.best.usd_per_month < start_cost  # minReplicas 1 all day is the expensive part
    assert result.best.scenario.pools["pro"].keda.min_replicas == 0


def test_an_unreachable_target_is_reported_as_not_met(scenario: Build) -> None:
    # 40 jobs at once: at most 2 warm workers and 4 replicas cannot start them all at once
    burst = scenario(
        workload=[
            {
                "tier": "pro",
                "arrivals": {"windows": [], "bursts": [{"at_seconds": 3600, "jobs": 40}]},
                "job": {"model": "sd15"},
            }
        ]
    )
    result = recommend(burst, {"pro": 1.0}, load_catalog(), load_calibration(), SPACE, check_seeds=0)
    assert not result.meets
    assert result.worst_ratio > 1


def test_the_values_fragment_passes_the_chart_schema(scenario: Build) -> None:
    sc = _tiny(scenario)
    sc = sc.model_copy(
        update={
            "pools": {
                **sc.pools,
                "pro": sc.pools["pro"].model_copy(update={"extra_config": {"batch_size": 2}}),
            }
        }
    )
    fragment: dict[str, Any] = yaml.safe_load(values_fragment(sc, ["pro"], load_catalog()))
    pool = fragment["tiers"]["pro"]["pool"]
    assert pool["extraConfig"] == {"batch_size": 2}
    assert pool["nodeSelector"] == {
        "genjob.io/node-role": "gpu-worker",
        "node.kubernetes.io/instance-type": "g5.xlarge",
    }
    values = yaml.safe_load((ROOT / "charts/genjob/values.yaml").read_text())
    merged = copy.deepcopy(values)
    _deep_merge(merged, fragment)
    schema = yaml.safe_load((ROOT / "charts/genjob/values.schema.json").read_text())
    jsonschema.validate(merged, schema)
    assert merged["tiers"]["pro"]["pool"]["keda"]["maxReplicas"] == 4
