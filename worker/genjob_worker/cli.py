"""Worker sub-commands: `genjob worker` runs the queue worker, `genjob model make-tiny` builds
the tiny random-weight model. Heavy imports (torch, diffusers) happen inside the commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from genjob.settings import GenjobSettings
from genjob.tiers import consumption_order


def _tier_list(value: str) -> list[str]:
    tiers = [t.strip() for t in value.split(",") if t.strip()]
    if not tiers:
        raise argparse.ArgumentTypeError("--tiers needs at least one tier name, e.g. --tiers pro,starter")
    return tiers


def _batch_size(value: str) -> int:
    size = int(value)
    if not 1 <= size <= 16:
        raise argparse.ArgumentTypeError(f"--batch-size {size} must be between 1 and 16")
    return size


def apply_overrides(args: argparse.Namespace, settings: GenjobSettings) -> GenjobSettings:
    """The settings with the command line's worker options on top (validated like the settings)."""
    update: dict[str, Any] = {}
    if args.tiers is not None:
        update["tiers"] = args.tiers
    if args.spill_over:
        update["spill_over"] = True
    if args.batch_size is not None:
        update["batch_size"] = args.batch_size
    if args.device is not None:
        update["device"] = args.device
    if not update:
        return settings
    worker = settings.worker.model_validate({**settings.worker.model_dump(), **update})
    consumption_order(settings.tiers, worker.tiers, worker.spill_over)  # raises on unknown tiers
    return settings.model_copy(update={"worker": worker})


def _worker(args: argparse.Namespace, settings: GenjobSettings) -> int:
    import sys

    try:
        settings = apply_overrides(args, settings)
    except ValueError as exc:
        print(f"genjob worker: {exc}", file=sys.stderr)
        return 2
    from genjob_worker.main import run_worker

    return run_worker(settings, once=args.once)


def _make_tiny(args: argparse.Namespace, settings: GenjobSettings) -> int:
    from genjob_worker.tiny_model import build_tiny_pipeline

    dest = build_tiny_pipeline(Path(args.dir), "sdxl" if args.xl else "sd")
    print(f"tiny {'SDXL' if args.xl else 'SD'} pipeline written to {dest}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("worker", help="run a generation worker (claims jobs from Redis)")
    p.add_argument("--tiers", type=_tier_list, help="own tiers, comma-separated (default: worker.tiers)")
    p.add_argument("--spill-over", action="store_true", help="also serve the own tiers' spill-over tiers")
    p.add_argument("--batch-size", type=_batch_size, help="claim up to N compatible jobs per pipeline call")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="torch device (default: worker.device)")
    p.add_argument("--once", action="store_true", help="wait for one claim, run it, then exit")
    p.set_defaults(func=_worker)

    model = subparsers.add_parser("model", help="model utilities")
    model_commands = model.add_subparsers(dest="model_command", metavar="COMMAND", required=True)
    tiny = model_commands.add_parser("make-tiny", help="build the tiny random-weight model into DIR")
    tiny.add_argument("dir", metavar="DIR", help="destination folder (e.g. .genjob/models/tiny)")
    tiny.add_argument("--xl", action="store_true", help="build an SDXL-shaped pipeline instead of SD 1.x")
    tiny.set_defaults(func=_make_tiny)
