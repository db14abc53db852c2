"""karpenter/ NodePools fit the chart's worker pods: selection, taints, drain times, limits."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml


def duration_seconds(text: str) -> float:
    """A Go duration such as 15m, 168h or 1h30m, in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


@pytest.fixture(scope="module")
def karpenter_objects(chartlib) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(chartlib.KARPENTER_DIR.glob("*.yaml")):
        docs += [
            d
            for d in yaml.safe_load_all(path.read_text())
            if d and "kind" in d and d.get("apiVersion", "").startswith("karpenter")
        ]
    return docs


def nodepools(docs):
    return [d for d in docs if d["kind"] == "NodePool"]


def requirement(pool: dict[str, Any], key: str) -> list[str]:
    return next(r["values"] for r in pool["spec"]["template"]["spec"]["requirements"] if r["key"] == key)


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") not in (None, "", taint["effect"]):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, taint["key"]):
            return True
        if t.get("key") == taint["key"] and t.get("value") == taint.get("value"):
            return True
    return False


def pools_for(worker_spec: dict[str, Any], docs) -> list[dict[str, Any]]:
    """NodePools whose nodes carry every label of the worker's nodeSelector, with taints it tolerates."""
    out = []
    for pool in nodepools(docs):
        labels = dict(pool["spec"]["template"].get("metadata", {}).get("labels", {}))
        ok = True
        for key, value in worker_spec["nodeSelector"].items():
            if key in labels:
                ok &= labels[key] == value
            else:
                try:
                    ok &= value in requirement(pool, key)
                except StopIteration:
                    ok = False
        taints = pool["spec"]["template"]["spec"].get("taints", [])
        ok &= all(tolerates(worker_spec.get("tolerations", []), t) for t in taints)
        if ok:
            out.append(pool)
    return out


def test_every_worker_pool_has_exactly_one_nodepool(rendered, karpenter_objects) -> None:
    for variant in ("default", "all-tiers", "no-keda", "minimal"):
        for w in [
            d for d in rendered[variant] if d["kind"] == "Deployment" and "-worker-" in d["metadata"]["name"]
        ]:
            spec = w["spec"]["template"]["spec"]
            matches = pools_for(spec, karpenter_objects)
            assert len(matches) == 1, (
                variant,
                w["metadata"]["name"],
                [p["metadata"]["name"] for p in matches],
            )
            pool = matches[0]
            grace = spec["terminationGracePeriodSeconds"]
            node_grace = duration_seconds(pool["spec"]["template"]["spec"]["terminationGracePeriod"])
            # Karpenter deletes pods at (node grace - pod grace): equal still gives the pod all of it.
            assert node_grace >= grace, "Karpenter would cut the worker's drain short"


def test_a_pod_without_the_tolerations_cannot_land_on_gpu_nodes(karpenter_objects) -> None:
    for pool in nodepools(karpenter_objects):
        taints = pool["spec"]["template"]["spec"]["taints"]
        assert taints and not all(tolerates([], t) for t in taints)
        assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"} in taints


def test_spot_and_on_demand_pools(karpenter_objects) -> None:
    by_type = {tuple(requirement(p, "karpenter.sh/capacity-type")): p for p in nodepools(karpenter_objects)}
    assert set(by_type) == {("spot",), ("on-demand",)}
    assert set(requirement(by_type[("spot",)], "karpenter.k8s.aws/instance-family")) == {"g4dn", "g5"}
    assert set(requirement(by_type[("on-demand",)], "karpenter.k8s.aws/instance-family")) <= {
        "g4dn",
        "g5",
        "g6",
    }


def test_nodepools_have_limits_budgets_expiry_and_a_description(karpenter_objects) -> None:
    classes = {d["metadata"]["name"] for d in karpenter_objects if d["kind"] == "EC2NodeClass"}
    for pool in nodepools(karpenter_objects):
        name = pool["metadata"]["name"]
        spec = pool["spec"]
        assert int(spec["limits"]["nvidia.com/gpu"]) > 0, name
        assert spec["disruption"]["budgets"], name
        assert spec["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized", name
        assert duration_seconds(spec["template"]["spec"]["expireAfter"]) >= 24 * 3600, name
        assert spec["template"]["spec"]["nodeClassRef"]["name"] in classes, name
        assert pool["metadata"]["annotations"]["kubernetes.io/description"], name


def test_spot_drain_fits_the_interruption_notice(rendered, karpenter_objects) -> None:
    """On Spot the worker's whole grace (and so its drain) fits AWS's 2-minute notice."""
    for w in [
        d for d in rendered["default"] if d["kind"] == "Deployment" and "-worker-" in d["metadata"]["name"]
    ]:
        spec = w["spec"]["template"]["spec"]
        (pool,) = pools_for(spec, karpenter_objects)
        if requirement(pool, "karpenter.sh/capacity-type") == ["spot"]:
            assert spec["terminationGracePeriodSeconds"] <= 120


def test_node_drain_gives_busy_workers_their_grace_in_time(rendered, karpenter_objects) -> None:
    """A NodePool's terminationGracePeriod bounds a node drain: Karpenter deletes pods at
    (node grace - pod grace) even if they are do-not-disrupt. On Spot it must not exceed the
    2-minute interruption notice, or a busy worker gets its SIGTERM after AWS took the instance
    (and its job waits for the lease to expire); since the pod's grace is at most 120 s too, the
    delete comes at once. On-demand (no reclaim) it covers a job of the default timeoutSeconds
    plus the pod's grace, so expiry lets a running job finish. Either way the worker's drain
    deadline stays below the pod's grace."""
    from genjob.jobspec import GenerationJobSpec

    default_timeout = GenerationJobSpec.model_fields["timeout_seconds"].default
    for w in rendered["default"]:
        if w["kind"] != "Deployment" or "-worker-" not in w["metadata"]["name"]:
            continue
        spec = w["spec"]["template"]["spec"]
        grace = spec["terminationGracePeriodSeconds"]
        (container,) = spec["containers"]
        drain = next(
            e["value"] for e in container["env"] if e["name"] == "GENJOB_WORKER__DRAIN_GRACE_SECONDS"
        )
        assert 0 < float(drain) < grace, w["metadata"]["name"]
        (pool,) = pools_for(spec, karpenter_objects)
        node_grace = duration_seconds(pool["spec"]["template"]["spec"]["terminationGracePeriod"])
        if requirement(pool, "karpenter.sh/capacity-type") == ["spot"]:
            assert grace <= node_grace <= 120, (pool["metadata"]["name"], node_grace)
        else:
            assert node_grace >= default_timeout + grace, (pool["metadata"]["name"], node_grace)
