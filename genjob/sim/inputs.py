"""The simulator's sourced inputs: control-loop calibration and the instance/image-time catalog.

Both live in YAML files next to this module (data/calibration.yaml, data/catalog.yaml); every
figure carries the `source` it comes from. A scenario may override calibration figures.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

DATA_DIR = Path(__file__).with_name("data")
Environment = Literal["aws", "test_cluster"]
CapacityType = Literal["spot", "on-demand"]


class Sourced(BaseModel):
    """A figure and where it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float
    source: str = Field(min_length=1)


class InstanceType(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: str
    gpu_memory_gib: int
    vcpu: int
    memory_gib: int
    on_demand_usd_per_hour: Sourced
    spot_usd_per_hour: Sourced
    spot_interruptions_per_hour: Sourced

    def price(self, capacity_type: CapacityType) -> float:
        return (self.spot_usd_per_hour if capacity_type == "spot" else self.on_demand_usd_per_hour).value


class ImageTime(BaseModel):
    """Seconds for one image of `model` at a reference shape on `gpu`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    gpu: str
    width: int
    height: int
    steps: int
    seconds: float = Field(gt=0)
    source: str = Field(min_length=1)


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    load_seconds: Sourced


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    instances: dict[str, InstanceType]
    image_times: list[ImageTime]
    batch_marginal: Sourced
    models: dict[str, ModelInfo]

    def instance(self, name: str) -> InstanceType:
        try:
            return self.instances[name]
        except KeyError:
            raise ValueError(
                f"unknown instance type {name!r}; the catalog has {sorted(self.instances)}"
            ) from None

    def image_seconds(self, model: str, gpu: str, width: int, height: int, steps: int) -> float:
        """One image's GPU seconds: the reference figure scaled by steps x pixels."""
        for ref in self.image_times:
            if ref.model == model and ref.gpu == gpu:
                return ref.seconds * (steps / ref.steps) * (width * height) / (ref.width * ref.height)
        known = sorted({(t.model, t.gpu) for t in self.image_times})
        raise ValueError(f"no image time for model {model!r} on {gpu}; the catalog has {known}")

    def batch_seconds(self, one_image_seconds: float, images: float) -> float:
        """GPU seconds of `images` images run together (the first costs one image, each next one less).

        `images` may be fractional: what is left of preempted jobs that resume from their step.
        """
        if images <= 1.0:
            return one_image_seconds * images
        return one_image_seconds * (1 + (images - 1) * self.batch_marginal.value)


class Calibration(BaseModel):
    """Control-loop timings (seconds unless named otherwise), flattened from calibration.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keda_poll_to_scale_seconds: float
    keda_push_activation_seconds: float
    keda_default_polling_interval_seconds: float
    keda_default_cooldown_period_seconds: float
    hpa_sync_period_seconds: float
    hpa_tolerance: float
    hpa_scale_up_pods_per_period: float
    hpa_scale_up_percent_per_period: float
    hpa_default_scale_down_stabilization_seconds: float
    kubernetes_pod_create_seconds: float
    karpenter_batch_idle_seconds: float
    karpenter_batch_max_seconds: float
    karpenter_disruption_poll_seconds: float
    aws_spot_notice_seconds: float
    aws_min_billed_seconds: float
    node_launch_to_ready_seconds: float
    worker_start_seconds: float  # bound pod -> worker claiming, without the model load (median)
    worker_start_log_sigma: float  # its spread: sigma of ln(start / median), 0 = always the median
    image_pull_seconds: float
    sources: dict[str, str] = Field(default_factory=dict, description="Where each figure comes from.")


def _read(name: str) -> dict[str, Any]:
    data = yaml.safe_load((DATA_DIR / name).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{DATA_DIR / name} must hold a mapping")
    return data


@cache
def load_catalog() -> Catalog:
    return Catalog.model_validate(_read("catalog.yaml"))


def calibration_figures(environment: Environment) -> dict[str, Sourced]:
    """Every calibration figure of `environment`, by flat name (section_figure)."""
    raw = _read("calibration.yaml")
    figures: dict[str, Sourced] = {}
    for section, entries in raw.items():
        if section == "environments":
            if environment not in entries:
                raise ValueError(f"calibration.yaml has no environment {environment!r}")
            for name, fig in entries[environment].items():
                figures[name] = Sourced.model_validate(fig)
            continue
        for name, fig in entries.items():
            figures[f"{section}_{name}"] = Sourced.model_validate(fig)
    return figures


def load_calibration(
    environment: Environment = "aws", overrides: dict[str, float] | None = None
) -> Calibration:
    """The calibration of `environment`, with a scenario's overrides (source: 'scenario override')."""
    figures = calibration_figures(environment)
    for name, value in (overrides or {}).items():
        if name not in figures:
            raise ValueError(f"unknown calibration figure {name!r}; known: {sorted(figures)}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"calibration figure {name!r} must be a finite number >= 0, got {value}")
        figures[name] = Sourced(value=value, source="scenario override")
    return Calibration(
        **{name: fig.value for name, fig in figures.items()},
        sources={name: fig.source for name, fig in figures.items()},
    )
