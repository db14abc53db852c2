"""`genjob operator`: run the kopf operator (heavy imports happen inside the command)."""

from __future__ import annotations

import argparse
from typing import Any

from genjob.settings import GenjobSettings


def _operator(args: argparse.Namespace, settings: GenjobSettings) -> int:
    from genjob_operator.main import run_operator

    namespaces = args.namespace or list(settings.operator.namespaces)
    return run_operator(
        settings,
        namespaces,
        leader_election=not args.no_leader_election,
        lease_namespace=args.lease_namespace,
        identity=args.identity,
        lease_seconds=args.lease_seconds,
    )


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("operator", help="run the GenerationJob operator (kopf)")
    p.add_argument(
        "--namespace",
        action="append",
        help="watch this namespace (repeatable; default: operator.namespaces, empty = all namespaces)",
    )
    p.add_argument("--no-leader-election", action="store_true", help="act without holding the Lease")
    p.add_argument(
        "--lease-namespace", help="namespace of the leader Lease (default: $POD_NAMESPACE or default)"
    )
    p.add_argument("--identity", help="this replica's name in the Lease (default: host-pid)")
    p.add_argument("--lease-seconds", type=int, default=15, help="leader Lease duration (default 15)")
    p.set_defaults(func=_operator)
