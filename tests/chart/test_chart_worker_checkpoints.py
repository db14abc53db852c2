"""The chart exposes the worker's checkpoint settings (resuming preempted jobs) as documented
values, `worker.checkpoints.*` with per-tier overrides, and the rendered env loads into them."""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml

from genjob.settings import GenjobSettings, WorkerSettings

CHECKPOINT_ENV = {
    "onPreempt": "GENJOB_WORKER__CHECKPOINT_ON_PREEMPT",
    "intervalSeconds": "GENJOB_WORKER__CHECKPOINT_INTERVAL_SECONDS",
    "minJobSeconds": "GENJOB_WORKER__CHECKPOINT_MIN_JOB_SECONDS",
}


def _worker_settings(
    docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> dict[str, WorkerSettings]:
    """Each tier's worker settings, built from its Deployment's GENJOB_WORKER__* env alone."""
    out = {}
    for doc in docs:
        labels = doc["metadata"]["labels"]
        if doc["kind"] != "Deployment" or labels["app.kubernetes.io/component"] != "worker":
            continue
        with monkeypatch.context() as env:
            for name in [n for n in os.environ if n.startswith("GENJOB_")]:
                env.delenv(name)
            for var in doc["spec"]["template"]["spec"]["containers"][0]["env"]:
                if var["name"].startswith("GENJOB_WORKER__") and "value" in var:
                    env.setenv(var["name"], var["value"])
            out[labels["genjob.io/tier"]] = GenjobSettings().worker
    return out


def test_chart_defaults_equal_the_worker_settings_defaults(chartlib: Any) -> None:
    values = yaml.safe_load((chartlib.CHART_DIR / "values.yaml").read_text())
    chart = values["worker"]["checkpoints"]
    defaults = WorkerSettings()
    assert set(chart) == set(CHECKPOINT_ENV)
    assert chart["onPreempt"] == defaults.checkpoint_on_preempt
    assert chart["intervalSeconds"] == defaults.checkpoint_interval_seconds
    assert chart["minJobSeconds"] == defaults.checkpoint_min_job_seconds


def test_checkpoint_values_reach_each_pool_with_per_tier_overrides(
    chartlib: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = chartlib.objects(
        chartlib.render(
            sets=["worker.checkpoints.onPreempt=false", "worker.checkpoints.minJobSeconds=0"],
            # --set would make 7.5 a string
            extra=["--set-json", "tiers.pro.pool.checkpoints.intervalSeconds=7.5"],
        )
    )
    settings = _worker_settings(docs, monkeypatch)
    assert {"pro", "free"} <= set(settings)
    for tier, worker in settings.items():
        assert worker.checkpoint_on_preempt is False, tier
        assert worker.checkpoint_min_job_seconds == 0, tier
        assert worker.checkpoint_interval_seconds == (7.5 if tier == "pro" else 30), tier


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["worker.checkpoints.intervalSeconds=-1"], "/worker/checkpoints/intervalSeconds"),
        (["tiers.pro.pool.checkpoints.minJobSeconds=-5"], "/tiers/pro/pool/checkpoints/minJobSeconds"),
        (["worker.checkpoints.onPreempt=maybe"], "/worker/checkpoints/onPreempt"),
        (["worker.checkpoints.everyStep=true"], "additional properties 'everyStep' not allowed"),
    ],
)
def test_schema_rejects_bad_checkpoint_values(chartlib: Any, sets: list[str], message: str) -> None:
    assert message in chartlib.render_error(sets=sets)


def test_extra_config_cannot_set_what_the_chart_sets(chartlib: Any) -> None:
    """Two env entries of one name would leave it to Kubernetes which wins: the render refuses."""
    error = chartlib.render_error(sets=["tiers.pro.pool.extraConfig.checkpoint_interval_seconds=5"])
    assert "tiers.pro: extraConfig.checkpoint_interval_seconds is set by the chart" in error
