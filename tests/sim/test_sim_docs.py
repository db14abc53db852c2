"""docs/capacity.md stays true: its example scenario loads, its plots exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from genjob.sim.scenario import Scenario

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs/capacity.md").read_text()


def test_the_example_scenario_is_a_valid_scenario() -> None:
    example = DOC.split("## A scenario", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    scenario = Scenario.model_validate(yaml.safe_load(example))
    assert scenario.pools["pro"].keda.max_replicas == 10
    assert scenario.pools["enterprise"].capacity_type == "on-demand"


def test_every_image_the_doc_shows_is_in_the_repository() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", DOC)
    assert images
    assert all((ROOT / "docs" / image).is_file() for image in images)
