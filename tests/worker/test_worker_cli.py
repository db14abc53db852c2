"""`genjob worker` options on top of the settings (no process started), and `genjob model make-tiny`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from genjob.cli import main as genjob_main
from genjob.settings import GenjobSettings, ModelConfig
from genjob_worker.cli import apply_overrides, register
from genjob_worker.models import ModelRegistry


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["worker", *argv])


def test_options_override_the_worker_settings() -> None:
    """Ensures --tiers, --spill-over, --batch-size and --device replace the configured values."""
    settings = apply_overrides(
        parse("--tiers", "pro,starter", "--spill-over", "--batch-size", "4", "--device", "cpu"),
        GenjobSettings(),
    )
    assert settings.worker.tiers == ["pro", "starter"]
    assert settings.worker.spill_over and settings.worker.batch_size == 4 and settings.worker.device == "cpu"


def test_no_options_keep_the_settings() -> None:
    """Ensures a bare `genjob worker` uses the settings as they are."""
    settings = GenjobSettings()
    assert apply_overrides(parse(), settings) is settings


def test_unknown_tier_is_refused() -> None:
    """Ensures a tier that is not configured is an error naming the configured ones."""
    with pytest.raises(ValueError, match="unknown tier"):
        apply_overrides(parse("--tiers", "gold"), GenjobSettings())


def test_batch_size_out_of_range_is_refused() -> None:
    """Ensures --batch-size outside 1..16 is a usage error."""
    with pytest.raises(SystemExit):
        parse("--batch-size", "17")


@pytest.mark.parametrize(
    ("flags", "kind", "cls"),
    [((), "sd", StableDiffusionPipeline), (("--xl",), "sdxl", StableDiffusionXLPipeline)],
)
def test_make_tiny_command_writes_a_loadable_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], kind: str, cls: type
) -> None:
    """Ensures `genjob model make-tiny DIR [--xl]` (through the genjob entry point) writes a
    safetensors pipeline that ModelRegistry loads back as the right pipeline class."""
    dest = tmp_path / "models" / kind
    assert genjob_main(["model", "make-tiny", str(dest), *flags]) == 0
    assert str(dest) in capsys.readouterr().out
    assert (dest / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    registry = ModelRegistry({"t": ModelConfig(source=str(dest), kind=kind, memory_class="tiny")})
    assert isinstance(registry.get("t"), cls)


def test_make_tiny_needs_a_folder() -> None:
    """Ensures `genjob model make-tiny` without DIR is a usage error."""
    with pytest.raises(SystemExit) as info:
        genjob_main(["model", "make-tiny"])
    assert info.value.code == 2
