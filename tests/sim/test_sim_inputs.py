"""The sourced inputs: every figure has a source, overrides are checked, image times scale."""

from __future__ import annotations

import pytest

from genjob.sim.inputs import calibration_figures, load_calibration, load_catalog


@pytest.mark.parametrize("environment", ["aws", "test_cluster"])
def test_every_calibration_figure_names_its_source(environment: str) -> None:
    figures = calibration_figures(environment)
    assert len(figures) >= 18
    assert all(len(f.source) > 10 for f in figures.values())


def test_measured_figures_are_the_defaults() -> None:
    cal = load_calibration("aws")
    assert cal.hpa_sync_period_seconds == 15
    assert cal.keda_default_polling_interval_seconds == 30
    assert cal.keda_default_cooldown_period_seconds == 300
    assert (cal.karpenter_batch_idle_seconds, cal.karpenter_batch_max_seconds) == (1, 10)
    # The cold-start bench's measurements (issue 14) replaced the control-loop estimates.
    for figure in (
        "kubernetes_pod_create_seconds",
        "keda_push_activation_seconds",
        "keda_poll_to_scale_seconds",
    ):
        assert "bench/coldstart.py" in cal.sources[figure], figure
    test_cluster = load_calibration("test_cluster")
    assert "bench/coldstart.py" in test_cluster.sources["worker_start_seconds"]


def test_an_override_replaces_the_figure_and_its_source() -> None:
    cal = load_calibration("aws", {"image_pull_seconds": 12.0})
    assert cal.image_pull_seconds == 12.0
    assert cal.sources["image_pull_seconds"] == "scenario override"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"image_pul_seconds": 1.0}, "unknown calibration figure"), ({"image_pull_seconds": -1.0}, ">= 0")],
)
def test_bad_overrides_are_refused(overrides: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_calibration("aws", overrides)


def test_catalog_prices_and_times_have_sources() -> None:
    catalog = load_catalog()
    assert set(catalog.instances) == {"g4dn.xlarge", "g4dn.2xlarge", "g5.xlarge", "g5.2xlarge", "g5.4xlarge"}
    for it in catalog.instances.values():
        assert it.spot_usd_per_hour.value < it.on_demand_usd_per_hour.value
        assert it.on_demand_usd_per_hour.source and it.spot_interruptions_per_hour.source
    assert {(t.model, t.gpu) for t in catalog.image_times} == {
        ("sd15", "A10G"),
        ("sd15", "T4"),
        ("sdxl", "A10G"),
        ("sdxl", "T4"),
    }


def test_image_time_scales_with_steps_and_pixels() -> None:
    catalog = load_catalog()
    base = catalog.image_seconds("sdxl", "A10G", 1024, 1024, 30)
    assert base == pytest.approx(9.40)
    assert catalog.image_seconds("sdxl", "A10G", 1024, 1024, 15) == pytest.approx(base / 2)
    assert catalog.image_seconds("sdxl", "A10G", 512, 512, 30) == pytest.approx(base / 4)
    assert catalog.batch_seconds(base, 4) == pytest.approx(base * (1 + 3 * catalog.batch_marginal.value))


def test_unknown_model_or_instance_names_what_exists() -> None:
    catalog = load_catalog()
    with pytest.raises(ValueError, match="no image time for model 'flux'"):
        catalog.image_seconds("flux", "A10G", 1024, 1024, 30)
    with pytest.raises(ValueError, match=r"unknown instance type 'p5\.48xlarge'"):
        catalog.instance("p5.48xlarge")
