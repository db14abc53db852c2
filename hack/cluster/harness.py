"""A single-node Kubernetes control plane on loopback, for genjob's cluster test tier.

Starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake
nodes and pods) from the binaries that ``hack/cluster/build-tools.sh`` caches, with
generated certificates (CA, serving and client certs, service-account key, front-proxy
CA and client for the aggregation layer), RBAC authorization, etcd data in a temp dir
and an admin kubeconfig. Every process runs in its own process group with its pid in
``<state>/pids/``, and ``down`` (or ``Cluster.stop()``) ends them all.

People use it through ``make cluster-up`` / ``make cluster-down`` (fixed default ports,
kubeconfig in ``.cluster/kubeconfig``); ``tests/cluster/conftest.py`` loads this file by
path and uses ``Cluster`` with dynamic ports::

    python hack/cluster/harness.py up [--api-port 16443] [--etcd-port 12379] [--autoscaling]
    python hack/cluster/harness.py status
    python hack/cluster/harness.py down

The rest of hack/cluster is imported as the package ``genjob_cluster`` (see __init__.py).
Needs only the standard library, ``cryptography`` and ``PyYAML``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
DEFAULT_STATE_DIR = REPO_ROOT / ".cluster"
PACKAGE = "genjob_cluster"


def _import_package():
    """Register hack/cluster as the package ``genjob_cluster`` (it is not on sys.path)."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, HERE / "__init__.py", submodule_search_locations=[str(HERE)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


_import_package()

# The public names tests and later tiers use.
from genjob_cluster import pki  # noqa: E402
from genjob_cluster.components import (  # noqa: E402
    COMPONENTS,
    DEFAULT_NODE,
    KWOK_ANNOTATION,
    kubeconfig_dict,
    kwok_node,
)
from genjob_cluster.controlplane import Cluster  # noqa: E402
from genjob_cluster.errors import (  # noqa: E402
    AlreadyRunningError,
    ComponentFailedError,
    HarnessError,
    PortInUseError,
    StartTimeoutError,
    ToolMissingError,
)
from genjob_cluster.processes import Ports, alive, free_port  # noqa: E402
from genjob_cluster.tools import Tools, read_versions  # noqa: E402

__all__ = [
    "COMPONENTS",
    "DEFAULT_NODE",
    "KWOK_ANNOTATION",
    "AlreadyRunningError",
    "Cluster",
    "ComponentFailedError",
    "HarnessError",
    "PortInUseError",
    "Ports",
    "StartTimeoutError",
    "ToolMissingError",
    "Tools",
    "alive",
    "free_port",
    "kubeconfig_dict",
    "kwok_node",
    "main",
    "pki",
    "read_versions",
]


def _cmd_up(args: argparse.Namespace) -> int:
    running = Cluster.attach(args.state_dir).running()
    if running:
        raise AlreadyRunningError(
            f"a control plane from {args.state_dir} is already running ({', '.join(running)}); "
            f"use it (KUBECONFIG={args.state_dir}/kubeconfig) or stop it first: make cluster-down"
        )
    cluster = Cluster(
        args.state_dir, ports=Ports.fixed(args.api_port, args.etcd_port), autoscalers=args.autoscaling
    )
    begin = time.monotonic()
    cluster.start(timeout=args.timeout)
    extra = " with KEDA and Karpenter (kwok provider)" if args.autoscaling else ""
    print(
        f"\nControl plane up{extra} in {time.monotonic() - begin:.1f}s at {cluster.server}. Use it with:\n"
        f"  export KUBECONFIG={cluster.kubeconfig}\n"
        f"  export PATH={cluster.bin_dir}:{cluster.tools.bin_dirs['helm']}:$PATH\n"
        f"  kubectl get nodes\n"
        f"Logs: {cluster.log_dir}   Stop: make cluster-down"
    )
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    cluster = Cluster.attach(args.state_dir)
    cluster.stop()
    print(f"control plane from {cluster.state_dir} stopped")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    cluster = Cluster.attach(args.state_dir)
    report = cluster.status()
    if set(report) == {"api"}:
        print(f"no control plane recorded in {cluster.state_dir} (start one: make cluster-up)")
        return 1
    for name, line in report.items():
        print(f"{name:24} {line}")
    return 0 if all(line.startswith("running") for name, line in report.items() if name != "api") else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where kubeconfig, pki, logs and pids go (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a control plane and write <state-dir>/kubeconfig")
    up.add_argument("--api-port", type=int, default=int(os.environ.get("GENJOB_CLUSTER_API_PORT", 16443)))
    up.add_argument(
        "--etcd-port",
        type=int,
        default=int(os.environ.get("GENJOB_CLUSTER_ETCD_PORT", 12379)),
        help="etcd client port; the peer port is the next one",
    )
    up.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for a usable API")
    up.add_argument(
        "--autoscaling",
        action="store_true",
        help="also run KEDA (operator, metrics adapter) and Karpenter's kwok provider (shipped NodePools)",
    )
    up.set_defaults(func=_cmd_up)
    sub.add_parser("down", help="stop the control plane").set_defaults(func=_cmd_down)
    sub.add_parser("status", help="show component and API health").set_defaults(func=_cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
