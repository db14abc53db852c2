"""Resolve a job's img2img `initImage` into an RGB PIL image of the job's size.

Accepted forms, each refused with an `InvalidSpecError` saying why:
- a result URI of the configured store (`file://` under its root, or `s3://bucket/prefix...`)
  holding an image a job of the same tenant stored (result_store.result_tenant);
- an `https://` URL starting with a prefix of `worker.init_image_url_allowlist` (the prefix
  must end at a path boundary, redirects are not followed, the body is streamed and cut
  off at `init_image_max_bytes`); its host must be, and resolve to, public addresses only
  (not the cloud metadata endpoint, not a cluster-internal Service) unless
  `worker.init_image_allow_private`, and the connection goes to the address checked
  (genjob.destinations);
- an inline `data:image/png;base64,...` (also jpeg/webp) URI decoding to at most
  `init_image_max_bytes`.
The bytes are decoded with PIL (size-checked before decoding pixels), converted to RGB and
resized to the job's width x height.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ssl
import warnings
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import structlog
from PIL import Image

from genjob.destinations import DestinationRefused, PinnedRequest, pin_to_addresses
from genjob.errors import InvalidSpecError
from genjob.result_store import ResultNotFoundError, ResultStore, result_tenant

log = structlog.get_logger(__name__)

DATA_URI_TYPES = ("image/png", "image/jpeg", "image/webp")
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF")  # WebP: RIFF....WEBP, checked by Pillow
MAX_SOURCE_PIXELS = 40_000_000
FETCH_DEADLINE_SECONDS = 30.0


def normalized_https_url(url: str) -> str | None:
    """The URL in one canonical form (lower-case host, no default port), or None when it is not
    a plain https URL: credentials, a backslash, a dot segment or an encoded separator in the
    path (`/a/../b`, `%2e%2e`, `%2f`), or an unparsable port. Fetching it fetches exactly this."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() != "https" or not parts.hostname or "@" in parts.netloc or "\\" in url:
        return None
    lowered = parts.path.lower()
    if any(encoded in lowered for encoded in ("%2f", "%5c", "%2e")):
        return None
    if any(segment in (".", "..") for segment in unquote(parts.path).split("/")):
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if port in (None, 443) else f"{host}:{port}"
    return urlunsplit(("https", netloc, parts.path or "/", parts.query, ""))


def url_allowed(url: str, allowlist: Sequence[str]) -> bool:
    """True for a plain https URL whose normalized form starts with a normalized allowed
    prefix at a path boundary."""
    normalized = normalized_https_url(url)
    if normalized is None:
        return False
    for allowed in allowlist:
        prefix = normalized_https_url(allowed)
        if prefix is None:
            continue
        rest = normalized[len(prefix) :]
        if normalized.startswith(prefix) and (prefix.endswith("/") or rest[:1] in ("", "/", "?")):
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


def fetch_url(
    url: str,
    max_bytes: int,
    *,
    verify: ssl.SSLContext | bool = True,
    deadline_seconds: float = FETCH_DEADLINE_SECONDS,
    allow_private: bool = False,
) -> bytes:
    """GET an allowed URL within one overall deadline (connect, headers and body together: a
    server trickling bytes is cut off), refusing non-public destinations, redirects, errors and
    bodies over max_bytes. The body is read raw (not decompressed), so its size is what crossed
    the network."""

    async def fetch() -> bytes:
        async with asyncio.timeout(deadline_seconds):  # the name's lookup included
            request = (await asyncio.to_thread(pin_to_addresses, url, allow_private))[0]
            return await download(request)

    async def download(request: PinnedRequest) -> bytes:
        async with (
            httpx.AsyncClient(verify=verify, follow_redirects=False, timeout=deadline_seconds) as client,
            client.stream(
                "GET",
                request.url,
                headers={"Accept-Encoding": "identity", **request.headers},
                extensions=request.extensions,
            ) as response,
        ):
            if response.status_code != 200:
                raise InvalidSpecError(f"initImage URL {url} answered HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise InvalidSpecError(
                    f"initImage at {url} is {declared} bytes, over the {max_bytes}-byte limit"
                )
            chunks, size = [], 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > max_bytes:
                    raise InvalidSpecError(f"initImage at {url} is over the {max_bytes}-byte limit")
                chunks.append(chunk)
            return b"".join(chunks)

    host = urlsplit(url).hostname
    try:
        return asyncio.run(fetch())
    except DestinationRefused as exc:
        raise InvalidSpecError(
            f"initImage URL host {host} is not a public address ({exc.address}); "
            "ask an operator to set worker.init_image_allow_private if it must be reached"
        ) from None
    except TimeoutError:
        raise InvalidSpecError(
            f"initImage URL {url} did not answer in full within {deadline_seconds:g} s"
        ) from None
    except OSError as exc:  # the name does not resolve (httpx's own errors are not OSErrors)
        raise InvalidSpecError(
            f"initImage URL host {host} does not resolve ({exc.strerror or type(exc).__name__})"
        ) from None
    except httpx.HTTPError as exc:
        log.info("initImage fetch failed", url=url, error=f"{type(exc).__name__}: {exc}")
        raise InvalidSpecError(
            f"initImage URL {url} could not be fetched ({type(exc).__name__}); check that it is reachable"
        ) from None


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
    tenant: str,
    tls_verify: ssl.SSLContext | bool = True,
    allow_private: bool = False,
) -> bytes:
    """The raw bytes behind an initImage reference of a job of `tenant` (see the module
    docstring for the rules)."""
    if ref.startswith("data:"):
        return decode_data_uri(ref, max_bytes)
    if store.owns(ref):
        if result_tenant(store.relative_key(ref)) != tenant:  # checked before any read: no oracle
            raise InvalidSpecError(
                "initImage is not an image result of this tenant's jobs (another tenant's, or not "
                "an image): use one of your own results, an allowed https URL or a data URI"
            )
        try:
            data = store.open(ref)
        except ResultNotFoundError:
            raise InvalidSpecError(f"initImage {ref} does not exist in the result store") from None
        if len(data) > max_bytes:
            raise InvalidSpecError(f"initImage is {len(data)} bytes, over the {max_bytes}-byte limit")
        return data
    if ref.startswith("https://"):
        if not url_allowed(ref, url_allowlist):
            raise InvalidSpecError(f"initImage URL {ref} is not on the worker's URL allow-list")
        return fetch_url(
            normalized_https_url(ref) or ref, max_bytes, verify=tls_verify, allow_private=allow_private
        )
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
    tenant: str = "",
    tls_verify: ssl.SSLContext | bool = True,
    allow_private: bool = False,
) -> Image.Image:
    """The init image of a job of `tenant` ('' for a job without one) as an RGB image of
    width x height."""
    data = load_init_image_bytes(
        ref,
        store=store,
        max_bytes=max_bytes,
        url_allowlist=url_allowlist,
        tenant=tenant,
        tls_verify=tls_verify,
        allow_private=allow_private,
    )
    return decode_image(data, width, height)
