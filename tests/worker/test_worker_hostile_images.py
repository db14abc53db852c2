"""Hostile init images: crafted files end the job at once as InvalidSpec (no retry, no
circuit-breaker count), whatever Pillow would have raised for them."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from genjob.errors import InvalidSpecError
from genjob.queue import JobState
from genjob.settings import GenjobSettings
from genjob_worker.init_image import decode_image
from genjob_worker.models import ModelRegistry
from genjob_worker.results import encode_png
from tests.support.worker_harness import InProcessWorker, enqueue_job

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
INFLATES_PAST_PILLOW_TEXT_LIMIT = b"\0" * (2 * 1024 * 1024)  # ~2 KB compressed


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int = 8, height: int = 8, *, before_idat: bytes = b"", after_idat: bytes = b"") -> bytes:
    """A hand-built RGB PNG with extra chunks placed before or after its image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = (b"\0" + b"\x80" * 3 * min(width, 64)) * min(height, 64)
    return (
        PNG_MAGIC
        + _chunk(b"IHDR", ihdr)
        + before_idat
        + _chunk(b"IDAT", zlib.compress(rows))
        + after_idat
        + _chunk(b"IEND", b"")
    )


def _gif() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="GIF")
    return buffer.getvalue()


BOMB = zlib.compress(INFLATES_PAST_PILLOW_TEXT_LIMIT)
HOSTILE = {
    "iccp-bomb": _png(before_idat=_chunk(b"iCCP", b"icc\0\0" + BOMB)),
    "ztxt-bomb-before-data": _png(before_idat=_chunk(b"zTXt", b"k\0\0" + BOMB)),
    "ztxt-bomb-after-data": _png(after_idat=_chunk(b"zTXt", b"k\0\0" + BOMB)),
    "truncated": encode_png(Image.new("RGB", (64, 64), (9, 9, 9)))[:60],
    "huge-dimensions": _png(60_000, 60_000),
    "just-over-the-pixel-limit": _png(8_000, 5_001),
    "wrong-magic": b"GIF89a" + b"\0" * 64,
    "gif": _gif(),
    "bmp-header": b"BM" + b"\0" * 64,
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_image_bytes_are_invalid_spec(name: str) -> None:
    """Every crafted file is refused as InvalidSpec, never another exception type."""
    with pytest.raises(InvalidSpecError, match="initImage"):
        decode_image(HOSTILE[name], 64, 64)


def test_small_file_with_huge_dimensions_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pixel limit is checked from the header: no pixel data is decoded for an image over it."""

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    with pytest.raises(InvalidSpecError, match="pixels"):
        decode_image(_png(60_000, 60_000), 64, 64)


def test_only_png_jpeg_and_webp_are_decoded() -> None:
    for fmt in ("PNG", "JPEG", "WEBP"):
        import io

        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (200, 10, 10)).save(buffer, format=fmt)
        assert decode_image(buffer.getvalue(), 32, 32).size == (32, 32)
    with pytest.raises(InvalidSpecError, match="PNG, JPEG or WebP"):
        decode_image(HOSTILE["gif"], 32, 32)


@pytest.fixture
def loop_settings(make_loop_settings: Callable[..., GenjobSettings]) -> GenjobSettings:
    return make_loop_settings(heartbeat_interval_seconds=0.2)


def test_png_bomb_ends_the_job_without_retry_or_breaker_count(
    loop_settings: GenjobSettings, registry: ModelRegistry, tmp_path: Path
) -> None:
    """The reproduced attack: a 20 KB-class iCCP bomb with maxAttempts 20 fails once as
    InvalidSpec; the worker's circuit breaker does not count it and the worker keeps serving."""
    worker = InProcessWorker(loop_settings, registry)
    bomb = "data:image/png;base64," + base64.b64encode(HOSTILE["iccp-bomb"]).decode()
    for index in range(loop_settings.worker.max_consecutive_failures + 1):
        enqueue_job(worker.queue, f"bomb-{index}", init_image=bomb, max_attempts=20)
        worker.loop.claim_and_run()
        record = worker.queue.get(f"bomb-{index}")
        assert record is not None and record.state == JobState.FAILED, record
        assert record.reason == "InvalidSpec" and record.attempts == 1
    assert worker.breaker.consecutive_failures == 0 and not worker.breaker.is_open
    enqueue_job(worker.queue, "after", seed=1)
    worker.loop.claim_and_run()
    after = worker.queue.get("after")
    assert after is not None and after.state == JobState.SUCCEEDED
