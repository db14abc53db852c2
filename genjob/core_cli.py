"""Core sub-commands: `genjob crd` prints the CRD, `genjob settings` the effective settings."""

from __future__ import annotations

import argparse
import json
from typing import Any

from genjob.crd import render_crd_yaml
from genjob.settings import GenjobSettings


def _crd(args: argparse.Namespace, settings: GenjobSettings) -> int:
    print(render_crd_yaml(), end="")
    return 0


def _settings(args: argparse.Namespace, settings: GenjobSettings) -> int:
    print(json.dumps(settings.model_dump(mode="json"), indent=2))  # SecretStr prints as '**********'
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("crd", help="print the GenerationJob CRD generated from the models")
    p.set_defaults(func=_crd)
    p = subparsers.add_parser("settings", help="print the effective settings (secrets hidden)")
    p.set_defaults(func=_settings)
