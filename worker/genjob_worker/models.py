"""Configured models, loaded with diffusers' documented API and kept in a small LRU.

`ModelRegistry.get(name)` returns the text-to-image pipeline of a configured model,
loading it on first use with `StableDiffusionPipeline.from_pretrained` (kind `sd`) or
`StableDiffusionXLPipeline.from_pretrained` (kind `sdxl`) from a local folder or a hub
id. `get_img2img(name)` derives the image-to-image pipeline with
`AutoPipelineForImage2Image.from_pipe`, which shares every component (no extra weights).
At most `max_loaded` models stay loaded; the least recently used one is evicted and the
GPU cache freed.

Loading rules: dtype is the model's configured dtype on CUDA and always float32 on CPU
(half precision is slow or unsupported there); `local_files_only=True` unless the
source is a hub id and downloads are allowed (`GENJOB_ALLOW_MODEL_DOWNLOADS=1` read by
`ModelRegistry.from_settings`); attention slicing, VAE tiling and model/sequential CPU
offload come from the model's config (offload only applies on CUDA).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoPipelineForImage2Image, StableDiffusionPipeline, StableDiffusionXLPipeline

from genjob.errors import GenjobError
from genjob.settings import GenjobSettings, ModelConfig
from genjob_worker.memory import free_memory

ALLOW_DOWNLOADS_ENV = "GENJOB_ALLOW_MODEL_DOWNLOADS"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_PIPELINE_CLASSES = {"sd": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline}


class ModelNotFoundError(GenjobError, LookupError):
    """A job names a model that is not configured, or whose weights cannot be found."""

    def __init__(self, name: str, known: list[str], detail: str | None = None) -> None:
        listed = ", ".join(sorted(known)) or "(none)"
        why = detail or "it is not configured"
        super().__init__(f"model {name!r} is not available: {why}. Configured models: {listed}")
        self.name = name
        self.known = sorted(known)


def resolve_device(device: str) -> str:
    """Turn the `worker.device` setting (auto|cpu|cuda) into a torch device string."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("worker.device is 'cuda' but torch sees no CUDA device")
    return device


def is_hub_id(source: str) -> bool:
    """True for `org/name` sources that are not an existing local path."""
    return bool(_HUB_ID.match(source)) and not Path(source).exists()


def torch_dtype_for(config: ModelConfig, device: str) -> torch.dtype:
    """The configured dtype on CUDA; float32 on CPU whatever the config says."""
    if not device.startswith("cuda"):
        return torch.float32
    dtype: torch.dtype = getattr(torch, config.dtype)
    return dtype


class ModelRegistry:
    """Configured models by name, with an LRU of loaded pipelines (thread-safe)."""

    def __init__(
        self,
        models: Mapping[str, ModelConfig],
        *,
        device: str = "cpu",
        max_loaded: int = 2,
        allow_downloads: bool = False,
    ) -> None:
        if max_loaded < 1:
            raise ValueError("max_loaded must be at least 1")
        self._models = dict(models)
        self.device = device
        self.max_loaded = max_loaded
        self.allow_downloads = allow_downloads
        self._loaded: OrderedDict[str, Any] = OrderedDict()
        self._img2img: dict[str, Any] = {}
        self._lock = threading.RLock()
        # Called with (model name, seconds) after each load: the worker's model-load histogram.
        self.on_load: Callable[[str, float], None] | None = None

    @classmethod
    def from_settings(
        cls, settings: GenjobSettings, environ: Mapping[str, str] = os.environ
    ) -> ModelRegistry:
        return cls(
            settings.models,
            device=resolve_device(settings.worker.device),
            max_loaded=settings.worker.max_loaded_pipelines,
            allow_downloads=environ.get(ALLOW_DOWNLOADS_ENV, "") in ("1", "true", "yes"),
        )

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def loaded(self) -> list[str]:
        """Names of loaded models, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def config(self, name: str) -> ModelConfig:
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFoundError(name, self.names) from None

    def get(self, name: str) -> Any:
        """The text-to-image pipeline of `name`, loading it (and evicting the LRU one) if needed."""
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            self.config(name)  # unknown names fail before anything is evicted
            while len(self._loaded) >= self.max_loaded:  # make room first: two big models may not fit
                self.evict(next(iter(self._loaded)))
            began = time.monotonic()
            pipe = self._load(name)
            if self.on_load is not None:
                self.on_load(name, time.monotonic() - began)
            self._loaded[name] = pipe
            return pipe

    def get_img2img(self, name: str) -> Any:
        """The image-to-image pipeline of `name`, sharing the components of `get(name)`."""
        with self._lock:
            base = self.get(name)
            if name not in self._img2img:
                self._img2img[name] = AutoPipelineForImage2Image.from_pipe(base)
            return self._img2img[name]

    def evict(self, name: str) -> None:
        """Forget a loaded model and free the GPU cache."""
        with self._lock:
            pipe = self._loaded.pop(name, None)
            self._img2img.pop(name, None)
            if pipe is not None and hasattr(pipe, "remove_all_hooks"):
                pipe.remove_all_hooks()
            del pipe
            free_memory()

    def _load(self, name: str) -> Any:
        config = self.config(name)
        hub = is_hub_id(config.source)
        if not hub and not Path(config.source).is_dir():
            raise ModelNotFoundError(name, self.names, f"folder {config.source} does not exist")
        kwargs: dict[str, Any] = {
            "dtype": torch_dtype_for(config, self.device),
            "local_files_only": not (hub and self.allow_downloads),
        }
        if config.variant:
            kwargs["variant"] = config.variant
        try:
            pipe = _PIPELINE_CLASSES[config.kind].from_pretrained(config.source, **kwargs)
        except OSError as exc:
            hint = (
                ""
                if not hub or self.allow_downloads
                else f" (downloads are off; set {ALLOW_DOWNLOADS_ENV}=1)"
            )
            raise ModelNotFoundError(name, self.names, f"cannot load {config.source}: {exc}{hint}") from exc
        self._place(pipe, config)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _place(self, pipe: Any, config: ModelConfig) -> None:
        if config.enable_attention_slicing:
            pipe.enable_attention_slicing()
        if config.enable_vae_tiling:
            pipe.vae.enable_tiling()
        on_cuda = self.device.startswith("cuda")
        if on_cuda and config.cpu_offload == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        elif on_cuda and config.cpu_offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
