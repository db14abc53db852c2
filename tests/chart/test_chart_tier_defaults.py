"""The chart's default tiers are the core's (`genjob.tiers.default_tiers`): a change to one
without the other would make `helm install` serve different limits than `genjob up`."""

from __future__ import annotations

from typing import Any

import yaml

from genjob.tiers import TierConfig, default_tiers


def test_chart_tier_queues_equal_the_core_defaults(chartlib: Any) -> None:
    values = yaml.safe_load((chartlib.CHART_DIR / "values.yaml").read_text())
    chart = {name: TierConfig.model_validate(tier["queue"]) for name, tier in values["tiers"].items()}
    assert list(chart) == list(default_tiers())  # same tiers, same order (highest first)
    assert chart == default_tiers()
