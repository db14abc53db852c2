"""A simulation scenario: the workload per tier, the chart values per pool, prices and calibration.

Pool values use the chart's own names (`tiers.<tier>.pool` of charts/genjob/values.yaml:
capacityType, keda.listLength, extraConfig.batch_size, nodeSelector...), so a pool block can be
copied between a scenario and a values file; their defaults are the chart's defaults (a test
keeps them equal). NodePool defaults mirror karpenter/ the same way.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genjob.sim.inputs import CapacityType, Environment
from genjob.tiers import TierConfig, check_tiers, default_tiers

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"

# The chart's per-tier pool overrides (charts/genjob/values.yaml `tiers.<name>.pool`).
CHART_TIER_POOLS: dict[str, dict[str, Any]] = {
    "enterprise": {
        "capacityType": "on-demand",
        "terminationGracePeriodSeconds": 300,
        "keda": {"maxReplicas": 8},
    },
    "studio": {"keda": {"maxReplicas": 6}},
    "pro": {"keda": {"maxReplicas": 4}},
    "starter": {"keda": {"maxReplicas": 3}},
    "free": {"keda": {"maxReplicas": 2}},
}

_CAMEL = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ScaleDownValues(BaseModel):
    """`worker.keda.scaleDown` of the chart: the HPA removes at most `pods` per `periodSeconds`."""

    model_config = _CAMEL

    pods: int = Field(1, ge=1)
    period_seconds: int = Field(60, ge=1, alias="periodSeconds")


class KedaValues(BaseModel):
    """`worker.keda` of the chart."""

    model_config = _CAMEL

    min_replicas: int = Field(0, ge=0, alias="minReplicas")
    max_replicas: int = Field(4, ge=1, alias="maxReplicas")
    polling_interval: int = Field(15, ge=1, alias="pollingInterval")
    cooldown_period: int = Field(300, ge=0, alias="cooldownPeriod")
    list_length: int = Field(1, ge=1, alias="listLength")
    scale_down: ScaleDownValues = Field(default_factory=ScaleDownValues, alias="scaleDown")

    @model_validator(mode="after")
    def _min_below_max(self) -> KedaValues:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"keda.minReplicas {self.min_replicas} exceeds maxReplicas {self.max_replicas}")
        return self


class PoolValues(BaseModel):
    """One tier's worker pool: the chart's `worker.*` merged with `tiers.<name>.pool`."""

    model_config = _CAMEL

    enabled: bool = True
    capacity_type: CapacityType = Field("spot", alias="capacityType")
    termination_grace_period_seconds: int = Field(120, ge=1, alias="terminationGracePeriodSeconds")
    drain_margin_seconds: int = Field(10, ge=1, alias="drainMarginSeconds")
    spill_over: bool = Field(True, alias="spillOver")
    extra_config: dict[str, Any] = Field(default_factory=dict, alias="extraConfig")
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    keda: KedaValues = KedaValues()

    @model_validator(mode="after")
    def _batch_size_in_range(self) -> PoolValues:
        size = self.extra_config.get("batch_size", 1)
        if not isinstance(size, int) or not 1 <= size <= 16:
            raise ValueError(f"extraConfig.batch_size must be an integer 1..16, got {size!r}")
        return self

    @property
    def batch_size(self) -> int:
        return int(self.extra_config.get("batch_size", 1))

    @property
    def drain_grace_seconds(self) -> float:
        return float(self.termination_grace_period_seconds - self.drain_margin_seconds)


class NodePoolValues(BaseModel):
    """What the simulator needs of a karpenter/ NodePool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_types: list[str] = Field(min_length=1)
    consolidate_after_seconds: float = Field(ge=0)


def shipped_node_pools() -> dict[CapacityType, NodePoolValues]:
    """karpenter/nodepool-gpu-spot.yaml and -on-demand.yaml: g4dn/g5 xlarge/2xlarge, 1 GPU."""
    types = ["g4dn.xlarge", "g4dn.2xlarge", "g5.xlarge", "g5.2xlarge"]
    return {
        "spot": NodePoolValues(instance_types=types, consolidate_after_seconds=120),
        "on-demand": NodePoolValues(instance_types=types, consolidate_after_seconds=600),
    }


class JobShape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "sdxl"
    width: int = Field(1024, ge=64, le=4096)
    height: int = Field(1024, ge=64, le=4096)
    steps: int = Field(30, ge=1, le=500)
    images: int = Field(1, ge=1, le=16)


class Window(BaseModel):
    """A daily busy window: `rate_per_hour` from `start_hour` for `hours`, every day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_hour: float = Field(ge=0, lt=24)
    hours: float = Field(gt=0, le=24)
    rate_per_hour: float = Field(ge=0)


class Burst(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at_seconds: float = Field(ge=0)
    jobs: int = Field(ge=1)
    every_day: bool = False


class Arrivals(BaseModel):
    """Arrival process of one tier; the parts add up (e.g. a daily curve plus bursts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_per_hour: float = Field(0, ge=0, description="Poisson arrivals all day.")
    hourly_rates: list[float] | None = Field(None, description="24 Poisson rates, one per hour of the day.")
    windows: list[Window] = Field(default_factory=list)
    bursts: list[Burst] = Field(default_factory=list)
    trace: str | None = Field(None, description="File of arrival times in seconds, one per line.")
    priorities: dict[int, float] = Field(default_factory=lambda: {0: 1.0}, description="Share per priority.")

    @field_validator("hourly_rates")
    @classmethod
    def _24_rates(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (len(v) != 24 or min(v) < 0):
            raise ValueError("hourly_rates needs 24 rates >= 0 (hour 0 to hour 23)")
        return v

    @field_validator("priorities")
    @classmethod
    def _shares(cls, v: dict[int, float]) -> dict[int, float]:
        if not v or any(not 0 <= p <= 9 for p in v) or any(s < 0 for s in v.values()) or sum(v.values()) <= 0:
            raise ValueError("priorities maps priorities 0..9 to shares >= 0 with a positive sum")
        return v


class TierWorkload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tier: str
    arrivals: Arrivals
    job: JobShape = JobShape()
    image_seconds: float | None = Field(
        None, gt=0, description="Seconds per image on `image_seconds_gpu` (e.g. a design's own figure)."
    )
    image_seconds_gpu: str | None = Field(
        None, description="The GPU image_seconds was measured on; other GPUs scale by the catalog's ratio."
    )

    @model_validator(mode="after")
    def _gpu_given(self) -> TierWorkload:
        if (self.image_seconds is None) != (self.image_seconds_gpu is None):
            raise ValueError("image_seconds and image_seconds_gpu go together (e.g. 30 and A10G)")
        return self


class FixedCost(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    usd_per_month: float = Field(ge=0)
    source: str = Field(min_length=1)


class PriceOverride(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    spot: float | None = Field(None, ge=0)
    on_demand: float | None = Field(None, ge=0, alias="on-demand")
    source: str = Field(min_length=1)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    seed: int = 1
    days: int = Field(1, ge=1, le=31, description="Days simulated; $/month scales them to month_days.")
    month_days: float = Field(30, gt=0)
    environment: Environment = "aws"
    target_wait_seconds: float = Field(60, gt=0, description="Jobs waiting longer are counted.")
    calibration: dict[str, float] = Field(default_factory=dict)
    tiers: dict[str, TierConfig] = Field(default_factory=default_tiers)
    pools: dict[str, PoolValues] = Field(default_factory=dict)
    node_pools: dict[CapacityType, NodePoolValues] = Field(default_factory=shipped_node_pools)
    prices: dict[str, PriceOverride] = Field(default_factory=dict)
    spot_interruptions_per_hour: float | None = Field(None, ge=0, description="Overrides the catalog's.")
    push_scaler: bool = Field(
        True,
        description="The chart's operator.pushScaler.enabled: a pool at zero starts the moment a job is "
        "queued for its tier, not at KEDA's next poll.",
    )
    model_load_seconds: float | None = Field(
        None,
        ge=0,
        description="Overrides the catalog's model load time (e.g. the pod runner's emulated delay).",
    )
    resume_from_step: bool = Field(False, description="What-if: a preempted job keeps its finished steps.")
    fixed_costs: list[FixedCost] = Field(default_factory=list)
    workload: list[TierWorkload] = Field(min_length=1)
    base_dir: Path = Field(Path("."), exclude=True, description="Where relative trace paths start.")

    @model_validator(mode="before")
    @classmethod
    def _chart_pool_defaults(cls, data: Any) -> Any:
        """Every tier gets a pool: the chart's tier defaults, then the scenario's own values."""
        if not isinstance(data, dict):
            return data
        tiers = data.get("tiers") or {n: t.model_dump() for n, t in default_tiers().items()}
        given = data.get("pools") or {}
        pools = {}
        for name in tiers:
            merged = copy.deepcopy(CHART_TIER_POOLS.get(name, {}))
            _deep_merge(merged, given.get(name) or {})
            pools[name] = merged
        unknown = sorted(set(given) - set(tiers))
        if unknown:
            raise ValueError(f"pools for unknown tier(s) {unknown}; tiers are {sorted(tiers)}")
        return {**data, "pools": pools}

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        check_tiers(self.tiers)
        for w in self.workload:
            if w.tier not in self.tiers:
                raise ValueError(f"workload for unknown tier {w.tier!r}; tiers are {sorted(self.tiers)}")
        for name, pool in self.pools.items():
            wanted = pool.node_selector.get(INSTANCE_TYPE_LABEL)
            allowed = self.node_pools[pool.capacity_type].instance_types
            if wanted is not None and wanted not in allowed:
                raise ValueError(
                    f"pool {name!r} selects instance type {wanted!r}, which its NodePool "
                    f"({pool.capacity_type}) does not offer: {allowed}"
                )
        return self


def _deep_merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario YAML file; errors name the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"scenario file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"scenario file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"scenario file {path} must hold a mapping (name, workload, pools...)")
    data.pop("design", None)  # a design's hand arithmetic (handcalc.py), not the simulation's input
    return Scenario.model_validate({**data, "base_dir": path.parent})


def with_pool(scenario: Scenario, tier: str, values: dict[str, Any]) -> Scenario:
    """A copy of `scenario` whose `tier` pool has `values` merged in (chart names)."""
    pools = {n: p.model_dump(by_alias=True) for n, p in scenario.pools.items()}
    _deep_merge(pools[tier], values)
    data = scenario.model_dump(by_alias=True)
    data["pools"] = pools
    data["base_dir"] = scenario.base_dir
    return Scenario.model_validate(data)
