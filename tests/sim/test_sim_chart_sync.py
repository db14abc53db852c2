"""The simulator's default pool values and NodePools are the ones the chart and karpenter/ ship."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from genjob.sim.scenario import CHART_TIER_POOLS, KedaValues, PoolValues, Scenario, shipped_node_pools
from genjob.tiers import default_tiers

ROOT = Path(__file__).resolve().parents[2]


def _values() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "charts/genjob/values.yaml").read_text())


def test_pool_defaults_are_the_chart_worker_defaults() -> None:
    worker = _values()["worker"]
    pool, keda = PoolValues(), KedaValues()
    assert pool.capacity_type == worker["capacityType"]
    assert pool.termination_grace_period_seconds == worker["terminationGracePeriodSeconds"]
    assert pool.drain_margin_seconds == worker["drainMarginSeconds"]
    assert pool.spill_over == worker["spillOver"]
    assert keda.model_dump(by_alias=True) == worker["keda"]


def test_per_tier_pool_overrides_are_the_chart_tiers() -> None:
    tiers = _values()["tiers"]
    assert {name: t["pool"] for name, t in tiers.items()} == CHART_TIER_POOLS
    defaults = default_tiers()
    assert list(tiers) == list(defaults)
    for name, tier in tiers.items():  # the simulator claims in tiers.py's spill-over order
        assert tier["queue"]["spill_over_to"] == defaults[name].spill_over_to
        assert tier["queue"]["weight"] == defaults[name].weight


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)([smh])", text)
    assert match, text
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]


def test_node_pools_are_the_shipped_karpenter_node_pools() -> None:
    shipped = shipped_node_pools()
    for capacity, name in (("spot", "spot"), ("on-demand", "on-demand")):
        doc = yaml.safe_load((ROOT / f"karpenter/nodepool-gpu-{name}.yaml").read_text())
        reqs = {r["key"]: r["values"] for r in doc["spec"]["template"]["spec"]["requirements"]}
        assert reqs["karpenter.sh/capacity-type"] == [capacity]
        assert reqs["karpenter.k8s.aws/instance-gpu-count"] == ["1"]
        types = {
            f"{fam}.{size}"
            for fam in reqs["karpenter.k8s.aws/instance-family"]
            for size in reqs["karpenter.k8s.aws/instance-size"]
        }
        assert set(shipped[capacity].instance_types) == types
        after = _seconds(doc["spec"]["disruption"]["consolidateAfter"])
        assert shipped[capacity].consolidate_after_seconds == after


def test_push_activation_follows_the_chart_operator_push_scaler() -> None:
    default = Scenario.model_fields["push_scaler"].default
    assert default is _values()["operator"]["pushScaler"]["enabled"] is True
