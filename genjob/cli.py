"""The `genjob` command: one entry point, sub-commands contributed by each component.

Each component package has a light `cli.py` with `register(subparsers)` that adds its
sub-commands and sets `func(args, settings) -> int`; heavy imports (torch, kopf, fastapi)
happen inside `func`, so `genjob --help` stays fast. Settings are built once, here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from pydantic import ValidationError

from genjob import __version__
from genjob.settings import GenjobSettings

COMPONENT_CLIS = (
    "genjob.core_cli",
    "genjob.sim.cli",
    "genjob_worker.cli",
    "genjob_operator.cli",
    "genjob_api.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genjob", description="Stable Diffusion generation as queued jobs.")
    parser.add_argument("--version", action="version", version=f"genjob {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMPONENT_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace, GenjobSettings], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        settings = GenjobSettings()
    except (ValidationError, FileNotFoundError) as exc:
        print(
            f"genjob: invalid configuration:\n{exc}\nFix the GENJOB_* variables or the config file.",
            file=sys.stderr,
        )
        return 2
    return func(args, settings)


if __name__ == "__main__":
    raise SystemExit(main())
