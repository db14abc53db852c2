"""manifests/ stays in sync with the chart: the CRD copies and the rendered default install."""

from __future__ import annotations

import difflib


def test_rendered_default_install_equals_helm_template(chartlib) -> None:
    """manifests/genjob.yaml is exactly `make chart-manifests` (helm template of the defaults)."""
    expected = chartlib.render([chartlib.PLAIN_VALUES], extra=["--skip-tests"])
    actual = chartlib.PLAIN_RENDERED.read_text()
    if actual != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    actual.splitlines(True),
                    expected.splitlines(True),
                    "manifests/genjob.yaml",
                    "helm template",
                )
            )[:80]
        )
        raise AssertionError(f"manifests/genjob.yaml is stale: run `make chart-manifests`\n{diff}")


def test_plain_install_carries_no_generated_secret(chartlib) -> None:
    """The Redis password comes from a Secret the user creates, never from the committed YAML."""
    docs = chartlib.objects(chartlib.PLAIN_RENDERED.read_text())
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert not [d for d in docs if d["kind"] == "Pod"], "helm test hooks do not belong in the plain install"


def test_rendering_is_deterministic(chartlib) -> None:
    assert chartlib.render([chartlib.PLAIN_VALUES]) == chartlib.render([chartlib.PLAIN_VALUES])


def test_crd_copies_are_identical() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    chart = sorted(p.name for p in (root / "charts/genjob/crds").glob("*.yaml"))
    plain = sorted(p.name for p in (root / "manifests/crds").glob("*.yaml"))
    assert chart == plain == ["generationjobs.genjob.io.yaml"]
    for name in chart:
        assert (root / "charts/genjob/crds" / name).read_bytes() == (
            root / "manifests/crds" / name
        ).read_bytes()
