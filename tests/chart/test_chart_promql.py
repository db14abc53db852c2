"""The chart's PromQL (PrometheusRule alerts, Grafana dashboard queries) parses with Prometheus's own
parser at a pinned release (hack/crds/promql: Prometheus v3.5.0), so a typo fails here and not
silently in a Prometheus that never fires the alert. Which metric names they use is checked against
genjob's metrics classes in test_chart_render.py."""

from __future__ import annotations

import json
import subprocess

import pytest


def alert_and_dashboard_exprs(docs) -> list[str]:
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    dashboard = json.loads(cm["data"]["genjob.json"])
    # Grafana substitutes its variables before the query reaches Prometheus.
    exprs += [t["expr"].replace("$namespace", "genjob") for p in dashboard["panels"] for t in p["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["query"].removeprefix("label_values(").split(",")[0])
    return [" ".join(e.split()) for e in exprs]  # one line each: the checker reads lines


@pytest.fixture(scope="module")
def promql_check(chartlib):
    try:
        return chartlib.promql_check_binary()
    except chartlib.ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def check(binary, exprs: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary)], input="\n".join(exprs) + "\n", capture_output=True, text=True)


def test_every_alert_and_dashboard_query_parses(rendered, promql_check) -> None:
    exprs = alert_and_dashboard_exprs(rendered["all-tiers"])
    assert len(exprs) >= 6 + 12
    result = check(promql_check, exprs)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_checker_rejects_broken_promql(promql_check) -> None:
    """The checker is not vacuous: a missing bracket and an unknown function are refused."""
    result = check(promql_check, ["sum by (tier (rate(x[5m]))", "rated(x[5m])", "up == 1"])
    assert result.returncode == 1
    assert "sum by (tier" in result.stdout and "rated(x[5m])" in result.stdout
    assert "up == 1" not in result.stdout
