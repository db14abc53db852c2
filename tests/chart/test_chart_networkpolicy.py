"""The chart's egress NetworkPolicies: what each component (operator, gateway, workers) may reach.

Each test asks the rendered policies whether a connection to an address and port would be
admitted, the way a NetworkPolicy implementation evaluates ipBlock peers (pod and namespace
selectors never match an outside address). The attacks: a webhook or init-image URL aimed at the
cloud metadata endpoint or at a cluster-internal Service must not get out of the pod.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

METADATA = "169.254.169.254"
METADATA_V6 = "fd00:ec2::254"
CLUSTER_SERVICE = "10.96.12.34"  # a ClusterIP in the usual Service range
PUBLIC = "93.184.216.34"
COMPONENTS = ("operator", "api", "worker")
# The recommended production setting: the API server's endpoints named (docs/security.md).
API_SERVER = "networkPolicy.egress.apiServerCIDRs={10.0.0.1/32}"
VARIANTS = ("default", "all-tiers", "external-redis", "local-cluster", "minimal", "no-keda", "redis-sentinel")


def egress_policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """component -> the egress NetworkPolicy selecting its pods."""
    out = {}
    for d in docs:
        if d["kind"] == "NetworkPolicy" and "Egress" in d["spec"].get("policyTypes", []):
            component = d["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            assert component not in out, f"two egress policies select {component}"
            out[component] = d
    return out


def _peer_admits(peer: dict[str, Any], address: str) -> bool:
    block = peer.get("ipBlock")
    if block is None:
        return False  # a pod or namespace selector: cluster pods, never an outside address
    ip = ipaddress.ip_address(address)
    cidr = ipaddress.ip_network(block["cidr"])
    if ip.version != cidr.version or ip not in cidr:
        return False
    return not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))


def admits(policy: dict[str, Any], address: str, port: int, protocol: str = "TCP") -> bool:
    """Whether some egress rule of `policy` lets a connection to address:port out."""
    for rule in policy["spec"].get("egress", []):
        ports = rule.get("ports")
        if ports and not any(
            p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports
        ):
            continue
        peers = rule.get("to")
        if not peers or any(_peer_admits(peer, address) for peer in peers):
            return True
    return False


def _render(chartlib, *sets: str, values: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    files = [chartlib.CHART_DIR / "ci" / f"{v}-values.yaml" for v in values]
    return egress_policies(chartlib.objects(chartlib.render(files, sets)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_component_has_an_egress_policy(rendered, variant) -> None:
    """minimal turns NetworkPolicies off altogether."""
    expected = set() if variant == "minimal" else set(COMPONENTS)
    assert set(egress_policies(rendered[variant])) == expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_component_reaches_the_cloud_metadata_endpoint(rendered, variant) -> None:
    """The attack: a webhook or init-image URL at http(s)://169.254.169.254 (or the IPv6 metadata
    address) to steal the node's cloud credentials."""
    for component, policy in egress_policies(rendered[variant]).items():
        for port in (80, 443, 6443, 8080):
            assert not admits(policy, METADATA, port), (component, port)
            assert not admits(policy, METADATA_V6, port), (component, port)


def test_with_the_api_server_cidrs_set_nothing_reaches_cluster_internal_services(chartlib) -> None:
    """The attack: a webhook or init-image URL at a cluster-internal Service (Redis of another
    team, an admin dashboard). Only the API server's own endpoint gets through."""
    policies = _render(chartlib, API_SERVER)
    for component, policy in policies.items():
        for port in (80, 443, 6379, 6443, 8080):
            assert not admits(policy, CLUSTER_SERVICE, port), (component, port)
        assert admits(policy, "10.0.0.1", 443), component
        assert not admits(policy, "10.0.0.1", 22), component


def test_the_operator_reaches_dns_redis_and_the_api_server_only(chartlib) -> None:
    policy = _render(chartlib, API_SERVER)["operator"]
    rules = policy["spec"]["egress"]
    assert len(rules) == 3
    dns, redis, api_server = rules
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert redis["ports"] == [{"port": 6379, "protocol": "TCP"}]
    assert redis["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    assert {p["port"] for p in api_server["ports"]} == {443, 6443}
    assert api_server["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert not admits(policy, PUBLIC, 443)


def test_the_gateway_delivers_webhooks_to_public_addresses_only(rendered) -> None:
    policy = egress_policies(rendered["default"])["api"]
    assert admits(policy, PUBLIC, 8443)
    assert admits(policy, "2606:2800:220:1::1", 443)
    for private in ("10.1.2.3", "172.20.0.5", "192.168.1.10", "100.64.0.1", "127.0.0.1"):
        assert not admits(policy, private, 8443), private


def test_webhook_egress_can_be_turned_off_or_pointed_at_internal_receivers(chartlib) -> None:
    off = _render(chartlib, "networkPolicy.egress.webhooks=false")["api"]
    assert not admits(off, PUBLIC, 8443)
    internal = _render(chartlib, "networkPolicy.egress.webhooksTo[0].ipBlock.cidr=10.1.0.0/16")["api"]
    assert admits(internal, "10.1.2.3", 9000)
    assert not admits(internal, PUBLIC, 8443)


def test_without_the_api_server_cidrs_only_the_api_server_ports_are_open_wider(rendered) -> None:
    """The fallback when `apiServerCIDRs` is empty: any non-link-local address on 443 and 6443
    (the accepted residual risk docs/security.md names), nothing on other ports."""
    for component, policy in egress_policies(rendered["default"]).items():
        assert admits(policy, CLUSTER_SERVICE, 443), component
        assert not admits(policy, CLUSTER_SERVICE, 80), component
        assert not admits(policy, "10.0.0.1", 22), component


def test_workers_get_no_internet_unless_something_needs_it(chartlib) -> None:
    assert not admits(_render(chartlib, API_SERVER)["worker"], PUBLIC, 443)
    for sets in (
        ("worker.extraConfig.init_image_url_allowlist={https://images.example.com/}",),
        ("networkPolicy.egress.workerHttps=true",),
        ("models.source=init",),
    ):
        worker = _render(chartlib, API_SERVER, *sets)["worker"]
        assert admits(worker, PUBLIC, 443), sets
        assert not admits(worker, PUBLIC, 80), sets
        assert not admits(worker, "10.1.2.3", 80), sets


def test_external_redis_and_s3_get_their_ports(chartlib) -> None:
    """external-redis: rediss on 6380, S3 results over HTTPS, models from S3 by an init container."""
    policies = _render(chartlib, API_SERVER, values=("external-redis",))
    for component in COMPONENTS:
        assert admits(policies[component], "10.20.30.40", 6380), component
    for component in ("api", "worker"):
        assert admits(policies[component], PUBLIC, 443), component
    assert not admits(policies["operator"], PUBLIC, 443)


def test_an_in_cluster_s3_store_is_reached_on_its_endpoint_port(chartlib) -> None:
    policies = _render(
        chartlib,
        "results.backend=s3",
        "results.s3.bucket=b",
        "results.s3.endpointUrl=http://minio.storage.svc:9000",
        "networkPolicy.egress.resultStoreTo[0].namespaceSelector.matchLabels.name=storage",
        "externalRedis.sentinels={10.0.0.7:26380}",
        "externalRedis.url=redis://ignored:6379/0",
        "redis.enabled=false",
    )
    for component in ("api", "worker"):
        rule = next(
            r
            for r in policies[component]["spec"]["egress"]
            if {"port": 9000, "protocol": "TCP"} in r["ports"]
        )
        assert rule["to"] == [{"namespaceSelector": {"matchLabels": {"name": "storage"}}}]
    assert admits(policies["operator"], "10.0.0.7", 26380)


def test_egress_policies_can_be_turned_off(chartlib) -> None:
    assert _render(chartlib, "networkPolicy.egress.enabled=false") == {}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "minimal"])
def test_every_pod_is_under_default_deny_ingress_and_its_components_egress(
    chartlib, rendered, variant
) -> None:
    """No pod of the release escapes the policies: ingress is denied unless a component policy
    admits it, and operator, gateway and worker pods have their egress restricted."""
    docs = rendered[variant]
    deny = next(
        d
        for d in docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("default-deny-ingress")
    )
    assert deny["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in deny["spec"]
    egress = egress_policies(docs)
    pods = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")] + chartlib.by_kind(docs, "Pod")
    assert pods
    for workload in pods:
        labels = (
            workload["metadata"]["labels"]
            if workload["kind"] == "Pod"
            else workload["spec"]["template"]["metadata"]["labels"]
        )
        assert _selects(deny["spec"]["podSelector"], labels), workload["metadata"]["name"]
        component = labels["app.kubernetes.io/component"]
        if component in COMPONENTS:
            assert _selects(egress[component]["spec"]["podSelector"], labels), workload["metadata"]["name"]


def test_with_the_bundled_sentinels_every_component_reaches_them(rendered) -> None:
    """The components ask the sentinels for the primary (port 26379) and use Redis (6379)."""
    for component, policy in egress_policies(rendered["redis-sentinel"]).items():
        reached = {
            (
                rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
                rule["ports"][0]["port"],
            )
            for rule in policy["spec"]["egress"]
            if rule.get("to") and "podSelector" in rule["to"][0] and "namespaceSelector" not in rule["to"][0]
        }
        assert {("redis", 6379), ("redis-sentinel", 26379)} <= reached, component
