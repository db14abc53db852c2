"""manifests/ stays in sync with the chart: the CRD copies and the rendered default install."""

from __future__ import annotations

import difflib


def test_rendered_default_install_equals_helm_template(chartlib) -> None:
    """manifests/genjob.yaml is exactly `make chart-manifests` (helm template of the defaults,
    ordered for kubectl)."""
    expected = chartlib.render_plain()
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


def test_plain_install_applies_trigger_authentications_before_the_scaled_objects(chartlib) -> None:
    """`kubectl apply -f` creates objects in file order, and KEDA builds a scaler whose
    TriggerAuthentication does not exist yet without its credentials (the push scaler then
    dials the operator without TLS until the ScaledObject changes)."""
    kinds = [d["kind"] for d in chartlib.objects(chartlib.PLAIN_RENDERED.read_text())]
    assert "TriggerAuthentication" in kinds and "ScaledObject" in kinds
    last_auth = max(i for i, kind in enumerate(kinds) if kind == "TriggerAuthentication")
    first_scaled = kinds.index("ScaledObject")
    assert last_auth < first_scaled, "a TriggerAuthentication comes after a ScaledObject"
