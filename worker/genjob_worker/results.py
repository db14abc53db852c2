"""Images into the result store: PNG encoding (Pillow) on top of the core's byte store.

The store's layout, URIs and bounds checks are the core's (`genjob.result_store`), shared with
the gateway that reads results back; this module only turns an image into what it stores.
"""

from __future__ import annotations

import io

from PIL import Image

from genjob.jobspec import ImageResult
from genjob.result_store import ResultStore


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of an image (no optimize pass: fast, and deterministic for equal pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def put_image(store: ResultStore, image: Image.Image, tenant: str = "") -> ImageResult:
    """Store an image of a job of `tenant` as PNG (content-addressed: the same pixels of one
    tenant give the same URI)."""
    stored = store.put_png(encode_png(image), tenant)
    return ImageResult(
        uri=stored.uri,
        sha256=stored.sha256,
        size_bytes=stored.size_bytes,
        width=image.width,
        height=image.height,
    )
