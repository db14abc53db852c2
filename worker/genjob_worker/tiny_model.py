"""Build tiny random-weight Stable Diffusion pipelines for tests and the local quickstart.

Modelled on how diffusers' own fast tests build pipelines (`get_dummy_components`): the
real component classes (UNet2DConditionModel, AutoencoderKL, CLIP text encoders, a CLIP
tokenizer, EulerDiscreteScheduler) from deliberately small configs, seeded so the build
is deterministic, then saved with `save_pretrained(..., safe_serialization=True)` so the
worker loads them back through the same `from_pretrained` code as a real model.

The VAE keeps four blocks, i.e. the real latent downscale factor of 8, so image sizes
behave as with a real model (64x64 pixels -> 8x8 latents). The tokenizer is a byte-level
BPE over the 256 byte symbols (no merges): every prompt tokenizes, nothing is downloaded.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

BUILD_SEED = 0
TEXT_HIDDEN = 32
MAX_TOKENS = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's reversible byte -> printable character table, as a list indexed by byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table: dict[int, int] = {b: b for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = 256 + extra
            extra += 1
    return [chr(table[b]) for b in range(256)]


def write_tokenizer_files(folder: Path) -> Path:
    """Write a byte-level CLIP vocab.json (bytes, bytes + `</w>`, BOS, EOS) and an empty merges.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = _bytes_to_unicode()
    vocab = {sym: i for i, sym in enumerate(symbols)}
    vocab.update({sym + "</w>": 256 + i for i, sym in enumerate(symbols)})
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def _tokenizer() -> CLIPTokenizer:
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_tokenizer_files(Path(tmp))
        return CLIPTokenizer(
            vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=MAX_TOKENS
        )


def _text_config(tokenizer: CLIPTokenizer, projection_dim: int = TEXT_HIDDEN) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        layer_norm_eps=1e-5,
        hidden_act="gelu",
        projection_dim=projection_dim,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )


def _scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )


def _sd_components() -> dict[str, object]:
    torch.manual_seed(BUILD_SEED)
    tokenizer = _tokenizer()
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    torch.manual_seed(BUILD_SEED)
    vae = _vae()
    torch.manual_seed(BUILD_SEED)
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": _scheduler(),
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def _sdxl_components() -> dict[str, object]:
    torch.manual_seed(BUILD_SEED)
    tokenizer = _tokenizer()
    # SDXL conditions on both encoders' hidden states (concatenated) plus the pooled
    # projection of the second and six size/crop ids embedded with addition_time_embed_dim.
    time_embed_dim = 8
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * TEXT_HIDDEN,
        attention_head_dim=(4, 8),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=6 * time_embed_dim + TEXT_HIDDEN,
        norm_num_groups=8,
    )
    torch.manual_seed(BUILD_SEED)
    vae = _vae()
    torch.manual_seed(BUILD_SEED)
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    torch.manual_seed(BUILD_SEED + 1)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer))
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": _tokenizer(),
        "scheduler": _scheduler(),
        "image_encoder": None,
        "feature_extractor": None,
    }


def build_tiny_pipeline(dest: Path, kind: Literal["sd", "sdxl"] = "sd") -> Path:
    """Build a deterministic tiny random-weight pipeline of `kind` and save it (safetensors) to `dest`."""
    if kind == "sd":
        pipe: Any = StableDiffusionPipeline(**_sd_components())
    elif kind == "sdxl":
        pipe = StableDiffusionXLPipeline(**_sdxl_components())
    else:
        raise ValueError(f"kind must be 'sd' or 'sdxl', not {kind!r}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(dest, safe_serialization=True)
    return dest
