"""The tiny model builds deterministically, saves as safetensors and loads back through ModelRegistry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from genjob.errors import GenjobError
from genjob.settings import GenjobSettings, ModelConfig
from genjob_worker.models import ModelNotFoundError, ModelRegistry, is_hub_id, torch_dtype_for
from genjob_worker.tiny_model import build_tiny_pipeline


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.safetensors"))
    }


def test_tiny_models_are_saved_as_safetensors_only(tiny_model_dirs: dict[str, Path]) -> None:
    """Every weight file is safetensors; no pickle .bin files; SDXL has its second encoder."""
    for kind, folder in tiny_model_dirs.items():
        files = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        assert "unet/diffusion_pytorch_model.safetensors" in files
        assert "vae/diffusion_pytorch_model.safetensors" in files
        assert "text_encoder/model.safetensors" in files
        assert not any(name.endswith(".bin") for name in files)
        assert ("text_encoder_2/model.safetensors" in files) == (kind == "sdxl")
        assert sum((folder / name).stat().st_size for name in files) < 20_000_000


def test_build_is_deterministic(tmp_path: Path, tiny_model_dirs: dict[str, Path]) -> None:
    """Building again gives byte-identical weights (fixed torch seed)."""
    again = build_tiny_pipeline(tmp_path / "again", "sd")
    assert _digest(again) == _digest(tiny_model_dirs["sd"])


def test_registry_loads_both_kinds_with_the_right_class(registry: ModelRegistry) -> None:
    sd = registry.get("tiny")
    xl = registry.get("tiny-xl")
    assert isinstance(sd, StableDiffusionPipeline)
    assert isinstance(xl, StableDiffusionXLPipeline)
    assert sd.unet.dtype == torch.float32
    assert sd.vae_scale_factor == 8
    assert registry.get("tiny") is sd  # cached


def test_img2img_pipeline_shares_components_and_is_cached(registry: ModelRegistry) -> None:
    base = registry.get("tiny")
    img2img = registry.get_img2img("tiny")
    assert type(img2img).__name__ == "StableDiffusionImg2ImgPipeline"
    assert img2img.unet is base.unet and img2img.vae is base.vae
    assert registry.get_img2img("tiny") is img2img


def test_lru_evicts_the_least_recently_used(model_configs: dict[str, ModelConfig]) -> None:
    small = ModelRegistry(model_configs, max_loaded=1)
    first = small.get("tiny")
    small.get("tiny-xl")
    assert small.loaded() == ["tiny-xl"]
    assert small.get("tiny") is not first  # reloaded after eviction


def test_unknown_model_lists_configured_models(registry: ModelRegistry) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        registry.get("sdxl-turbo")
    assert isinstance(info.value, GenjobError)
    assert "tiny" in str(info.value) and "tiny-xl" in str(info.value)
    assert info.value.known == ["tiny", "tiny-xl"]


def test_missing_folder_is_model_not_found(tmp_path: Path) -> None:
    registry = ModelRegistry({"gone": ModelConfig(source=str(tmp_path / "nope"), kind="sd")})
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        registry.get("gone")


def test_hub_id_without_downloads_is_model_not_found() -> None:
    """A hub id not in the local cache fails fast instead of downloading."""
    registry = ModelRegistry({"hub": ModelConfig(source="genjob-test/not-a-real-model", kind="sd")})
    with pytest.raises(ModelNotFoundError, match="GENJOB_ALLOW_MODEL_DOWNLOADS"):
        registry.get("hub")


def test_dtype_is_float32_on_cpu_whatever_the_config() -> None:
    config = ModelConfig(source="x", dtype="float16")
    assert torch_dtype_for(config, "cpu") == torch.float32
    assert torch_dtype_for(config, "cuda") == torch.float16
    assert is_hub_id("stabilityai/sdxl-turbo") and not is_hub_id("/models/sd15")


def test_from_settings_reads_worker_settings(model_configs: dict[str, ModelConfig]) -> None:
    settings = GenjobSettings(models=model_configs, worker={"device": "cpu", "max_loaded_pipelines": 3})
    registry = ModelRegistry.from_settings(settings, environ={"GENJOB_ALLOW_MODEL_DOWNLOADS": "1"})
    assert registry.names == ["tiny", "tiny-xl"]
    assert (registry.device, registry.max_loaded, registry.allow_downloads) == ("cpu", 3, True)
