"""The chart runs the real `genjob` CLI: every container command parses with genjob's own parser,
reaches the component that owns it, and listens where the chart probes and the Services point.

A renamed sub-command or flag in genjob/cli.py or a component's cli.py would otherwise only show
up as a CrashLoopBackOff after an install.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest
import yaml

from genjob.cli import build_parser

# sub-command -> the package whose cli.py must define it
COMPONENTS = {"operator": "genjob_operator.cli", "api": "genjob_api.cli", "worker": "genjob_worker.cli"}
# every ci/*-values.yaml
VARIANTS = ["default", "all-tiers", "no-keda", "external-redis", "minimal", "local-cluster", "redis-sentinel"]


def genjob_containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(deployment name, container) of every container that runs a genjob image (not Redis, not init)."""
    out = []
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            out.append((d["metadata"]["name"], c))
    return out


def parse(container: dict[str, Any]) -> argparse.Namespace:
    """What `genjob <args>` means to the real parser (the images' ENTRYPOINT is `genjob`)."""
    assert "command" not in container, "the chart must keep the image ENTRYPOINT (genjob)"
    return build_parser().parse_args(container["args"])


def port_of(container: dict[str, Any], name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_command_is_a_real_genjob_subcommand(rendered, variant) -> None:
    containers = genjob_containers(rendered[variant])
    seen = set()
    for name, container in containers:
        args = parse(container)
        assert args.command in COMPONENTS, f"{name}: unexpected sub-command {args.command!r}"
        assert args.func.__module__ == COMPONENTS[args.command], (name, args.func.__module__)
        seen.add(args.command)
    expected = (
        {"operator", "worker"} if variant == "minimal" else {"operator", "api", "worker"}
    )  # minimal: no api
    assert seen == expected, f"{variant}: components found {sorted(seen)}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_hit_the_ports_the_processes_listen_on(rendered, variant) -> None:
    """gateway: `genjob api` default --port; operator: operator.http_port of config.yaml;
    worker: GENJOB_WORKER__HTTP_PORT. Probes and Services use the named port `http`."""
    docs = rendered[variant]
    config_map = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config")
    )
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    for name, container in genjob_containers(docs):
        args = parse(container)
        http = port_of(container, "http")
        if args.command == "api":
            assert (args.host, args.port) == ("0.0.0.0", http), name
        elif args.command == "operator":
            assert config["operator"]["http_port"] == http, name
            push = config["operator"].get("push_port")  # KEDA's push trigger (off without KEDA)
            assert (push is not None) == any(p["name"] == "grpc-push" for p in container["ports"]), name
            if push is not None:
                assert push == port_of(container, "grpc-push"), name
        else:
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert int(env["GENJOB_WORKER__HTTP_PORT"]) == http, name
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe in container:
                assert container[probe]["httpGet"]["port"] == "http", (name, probe)
                assert container[probe]["httpGet"]["path"] in ("/healthz", "/readyz"), (name, probe)
    redis = ("-redis", "-redis-headless", "-redis-sentinel")  # Redis's own ports, not genjob processes
    for svc in (d for d in docs if d["kind"] == "Service" and not d["metadata"]["name"].endswith(redis)):
        port = "grpc-push" if svc["metadata"]["name"].endswith("-operator-push") else "http"
        assert all(p["targetPort"] == port for p in svc["spec"]["ports"]), svc["metadata"]["name"]


def test_helm_test_hook_checks_the_gateway_readiness_route(rendered) -> None:
    """The `helm test` pod's script is valid Python and asks the gateway's real /readyz via its Service."""
    from genjob_api.routes.health import router

    docs = rendered["default"]
    (pod,) = [d for d in docs if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["python", "-c"]
    compile(command[2], "helm-test", "exec")
    (service,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-api")]
    port = service["spec"]["ports"][0]["port"]
    url = f"http://{service['metadata']['name']}:{port}/readyz"
    assert url in command[2]
    assert "/readyz" in {route.path for route in router.routes}


def test_variants_cover_every_ci_values_file(rendered) -> None:
    assert set(VARIANTS) == set(rendered)
