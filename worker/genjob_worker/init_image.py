"""Resolve a job's img2img `initImage` into an RGB PIL image of the job's size.

Accepted forms, each refused with an `InvalidSpecError` saying why:
- a result URI of the configured store (`file://` under its root, or `s3://bucket/prefix...`);
- an `https://` URL starting with a prefix of `worker.init_image_url_allowlist` (the prefix
  must end at a path boundary, redirects are not followed, the body is streamed and cut
  off at `init_image_max_bytes`);
- an inline `data:image/png;base64,...` (also jpeg/webp) URI decoding to at most
  `init_image_max_bytes`.
The bytes are decoded with PIL (size-checked before decoding pixels), converted to RGB and
resized to the job's width x height.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Sequence
from urllib.parse import urlparse

import httpx
import structlog
from PIL import Image

from genjob.errors import InvalidSpecError
from genjob_worker.results import ResultNotFoundError, ResultStore

log = structlog.get_logger(__name__)

DATA_URI_TYPES = ("image/png", "image/jpeg", "image/webp")
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF")  # WebP: RIFF....WEBP, checked by Pillow
MAX_SOURCE_PIXELS = 40_000_000
FETCH_TIMEOUT_SECONDS = 15.0


def url_allowed(url: str, allowlist: Sequence[str]) -> bool:
    """True for an https URL without credentials that starts with an allowed prefix at a path boundary."""
    parsed = urlparse(url)
    if parsed.scheme != "https" or "@" in parsed.netloc:
        return False
    for prefix in allowlist:
        if url.startswith(prefix) and (prefix.endswith("/") or url[len(prefix) : len(prefix) + 1] in "/?#"):
            return True
    return False


def decode_data_uri(uri: str, max_bytes: int) -> bytes:
    header, sep, payload = uri.partition(",")
    media_type = header.removeprefix("data:").removesuffix(";base64")
    if not sep or not header.endswith(";base64") or media_type not in DATA_URI_TYPES:
        raise InvalidSpecError(f"initImage data URI must be data:<{'|'.join(DATA_URI_TYPES)}>;base64,<data>")
    if len(payload) * 3 // 4 > max_bytes + 2:
        raise InvalidSpecError(f"initImage is larger than the {max_bytes}-byte limit")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSpecError("initImage data URI is not valid base64") from None
    if len(data) > max_bytes:
        raise InvalidSpecError(f"initImage is {len(data)} bytes, over the {max_bytes}-byte limit")
    return data


def fetch_url(url: str, max_bytes: int, client: httpx.Client) -> bytes:
    """GET an allowed URL, streaming, refusing redirects, errors and bodies over max_bytes."""
    try:
        with client.stream("GET", url, follow_redirects=False, timeout=FETCH_TIMEOUT_SECONDS) as response:
            if response.status_code != 200:
                raise InvalidSpecError(f"initImage URL {url} answered HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise InvalidSpecError(
                    f"initImage at {url} is {declared} bytes, over the {max_bytes}-byte limit"
                )
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise InvalidSpecError(f"initImage at {url} is over the {max_bytes}-byte limit")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise InvalidSpecError(f"initImage URL {url} could not be fetched: {exc}") from None
    return b"".join(chunks)


def decode_image(data: bytes, width: int, height: int) -> Image.Image:
    """Decode PNG, JPEG or WebP bytes, convert to RGB and resize to width x height.

    The format is identified by its magic bytes and the pixel count read from the header
    (`Image.open` parses headers only) before any pixel data is decoded. Any failure while
    decoding is the file's fault, whatever Pillow raises for it (a zTXt/iCCP chunk that
    inflates past Pillow's limit raises ValueError, a broken header SyntaxError or
    struct.error, a truncated file OSError), so all of them become InvalidSpecError: the
    job ends at once, without a retry and without counting against the worker.
    """
    if not data.startswith(IMAGE_MAGIC):
        raise InvalidSpecError("initImage is not a PNG, JPEG or WebP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower limit follows
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                if image.width * image.height > MAX_SOURCE_PIXELS:
                    raise InvalidSpecError(
                        f"initImage is {image.width}x{image.height}, over {MAX_SOURCE_PIXELS} pixels"
                    )
                rgb = image.convert("RGB")
    except InvalidSpecError:
        raise
    except Image.DecompressionBombError:  # Pillow's own header check, for far larger images
        raise InvalidSpecError(f"initImage is over {MAX_SOURCE_PIXELS} pixels") from None
    except Exception as exc:  # any decoder failure is a property of the file
        log.info("initImage refused by the decoder", error=f"{type(exc).__name__}: {exc}")
        raise InvalidSpecError("initImage is not a readable PNG, JPEG or WebP image") from None
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.LANCZOS)
    return rgb


def load_init_image_bytes(
    ref: str,
    *,
    store: ResultStore,
    max_bytes: int,
    url_allowlist: Sequence[str],
    http_client: httpx.Client | None = None,
) -> bytes:
    """The raw bytes behind an initImage reference (see the module docstring for the rules)."""
    if ref.startswith("data:"):
        return decode_data_uri(ref, max_bytes)
    if store.owns(ref):
        try:
            data = store.open(ref)
        except ResultNotFoundError as exc:
            raise InvalidSpecError(f"initImage {ref} does not exist: {exc}") from None
        if len(data) > max_bytes:
            raise InvalidSpecError(f"initImage is {len(data)} bytes, over the {max_bytes}-byte limit")
        return data
    if ref.startswith("https://"):
        if not url_allowed(ref, url_allowlist):
            raise InvalidSpecError(f"initImage URL {ref} is not on the worker's URL allow-list")
        if http_client is not None:
            return fetch_url(ref, max_bytes, http_client)
        with httpx.Client() as client:
            return fetch_url(ref, max_bytes, client)
    raise InvalidSpecError(
        "initImage must be a result URI of this store, an allowed https URL, or a data:image/png;base64 URI"
    )


def resolve_init_image(
    ref: str,
    *,
    store: ResultStore,
    max_bytes: int,
    url_allowlist: Sequence[str],
    width: int,
    height: int,
    http_client: httpx.Client | None = None,
) -> Image.Image:
    """The init image of a job as an RGB image of width x height."""
    data = load_init_image_bytes(
        ref, store=store, max_bytes=max_bytes, url_allowlist=url_allowlist, http_client=http_client
    )
    return decode_image(data, width, height)
