"""img2img init images: data URIs, store URIs and allow-listed https URLs (a real local TLS server)."""

from __future__ import annotations

import base64
import datetime
import io
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image

from genjob.errors import InvalidSpecError
from genjob.result_store import FilesystemResultStore
from genjob_worker.generate import run_generation
from genjob_worker.init_image import fetch_url, resolve_init_image, url_allowed
from genjob_worker.models import ModelRegistry
from genjob_worker.results import encode_png, put_image

LIMIT = 64 * 1024


def _png(size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    return encode_png(Image.new("RGB", size, color))


def _data_uri(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


@pytest.fixture
def store(tmp_path: Path) -> FilesystemResultStore:
    return FilesystemResultStore(tmp_path / "results")


def _resolve(ref: str, store: FilesystemResultStore, **kwargs: object) -> Image.Image:
    options: dict[str, object] = {"max_bytes": LIMIT, "url_allowlist": [], "width": 64, "height": 64}
    options.update(kwargs)
    return resolve_init_image(ref, store=store, **options)


def test_inline_png_is_decoded_converted_and_resized(store: FilesystemResultStore) -> None:
    rgba = encode_png(Image.new("RGBA", (40, 30), (10, 20, 30, 128)))
    image = _resolve(_data_uri(rgba), store)
    assert image.mode == "RGB" and image.size == (64, 64)


def test_oversized_inline_image_is_refused(store: FilesystemResultStore) -> None:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    data = encode_png(noisy)
    assert len(data) > LIMIT
    with pytest.raises(InvalidSpecError, match="limit"):
        _resolve(_data_uri(data), store)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("data:text/plain;base64,aGVsbG8=", "data URI must be"),
        ("data:image/png,rawbytes", "data URI must be"),
        ("data:image/png;base64,not*base64", "not valid base64"),
        (_data_uri(b"not an image"), "not a PNG, JPEG or WebP image"),
        ("http://images.example.com/a.png", "must be a result URI"),
        ("ftp://images.example.com/a.png", "must be a result URI"),
        ("https://evil.example.com/a.png", "allow-list"),
        ("file:///etc/passwd", "must be a result URI"),
    ],
)
def test_refusals_are_invalid_spec(store: FilesystemResultStore, ref: str, message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        _resolve(ref, store, url_allowlist=["https://images.example.com/"])


def test_store_uri_is_read_back(store: FilesystemResultStore, tmp_path: Path) -> None:
    result = put_image(store, Image.new("RGB", (64, 64), (0, 90, 200)))
    image = _resolve(result.uri, store)
    assert image.getpixel((5, 5)) == (0, 90, 200)
    missing = (tmp_path / "results" / "00" / ("0" * 64 + ".png")).as_uri()
    with pytest.raises(InvalidSpecError, match="does not exist"):
        _resolve(missing, store)


def test_url_allowlist_matches_at_a_path_boundary() -> None:
    allow = ["https://cdn.example.com/inputs", "https://img.example.org/"]
    assert url_allowed("https://cdn.example.com/inputs/a.png", allow)
    assert url_allowed("https://img.example.org/x/y.png", allow)
    assert not url_allowed("https://cdn.example.com/inputs-evil/a.png", allow)
    assert not url_allowed("https://cdn.example.com.evil.net/inputs/a.png", allow)
    assert not url_allowed("https://user@img.example.org/a.png", allow)
    assert not url_allowed("http://img.example.org/a.png", allow)


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/inputs/../private/x.png",  # reproduced: fetched /private/x.png
        "https://cdn.example.com/inputs/./../private/x.png",
        "https://cdn.example.com/inputs/%2e%2e/private/x.png",
        "https://cdn.example.com/inputs/%2E%2e%2Fprivate/x.png",
        "https://cdn.example.com/inputs/..%5cprivate/x.png",
        "https://cdn.example.com/inputs\\..\\private/x.png",
        "https://user:pw@cdn.example.com/inputs/a.png",
        "https://cdn.example.com@evil.example.net/inputs/a.png",
        "https://cdn.example.com:99999/inputs/a.png",
    ],
)
def test_url_allowlist_refuses_dot_segments_userinfo_and_odd_forms(url: str) -> None:
    """The allow-list compares normalized URLs: a path that leaves the allowed prefix once
    normalized, credentials and unparsable ports never match."""
    assert not url_allowed(url, ["https://cdn.example.com/inputs/"])


def test_url_allowlist_compares_normalized_hosts_and_ports() -> None:
    allow = ["https://CDN.example.com:443/inputs/"]
    assert url_allowed("https://cdn.example.COM/inputs/a.png", allow)
    assert not url_allowed("https://cdn.example.com:8443/inputs/a.png", allow)


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ssl.SSLContext]]:
    """A real HTTPS server on 127.0.0.1 with a self-signed certificate, and a TLS context trusting it."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    small, big = _png(), b"\x89PNG" + b"\0" * (LIMIT + 10)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/ok/small.png":
                self.send_response(200)
                self.send_header("Content-Length", str(len(small)))
                self.end_headers()
                self.wfile.write(small)
            elif self.path == "/ok/big-undeclared.png":  # no Content-Length: only the streamed count stops it
                self.send_response(200)
                self.end_headers()
                self.wfile.write(big)
            elif self.path == "/ok/trickle.png":  # each byte well within any per-read timeout
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nPNG!":
                    time.sleep(0.4)
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            elif self.path == "/ok/redirect.png":
                self.send_response(302)
                self.send_header("Location", "https://elsewhere.example.com/x.png")
                self.end_headers()
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    trusting = ssl.create_default_context(cafile=str(folder / "cert.pem"))
    yield f"https://127.0.0.1:{server.server_address[1]}", trusting
    server.shutdown()
    thread.join()


def test_allowed_https_url_is_fetched(
    https_server: tuple[str, ssl.SSLContext], store: FilesystemResultStore
) -> None:
    base, client = https_server
    image = _resolve(
        f"{base}/ok/small.png", store, url_allowlist=[f"{base}/ok/"], tls_verify=client, allow_private=True
    )
    assert image.size == (64, 64) and image.getpixel((32, 32)) == (200, 30, 30)


@pytest.mark.parametrize("host", ["169.254.169.254", "10.96.0.1", "[fd00:ec2::254]", "[::1]", "localhost"])
def test_an_allowlisted_url_on_a_non_public_address_is_refused(
    store: FilesystemResultStore, host: str
) -> None:
    """The attack: an allow-list entry (or an allow-listed name) that leads to the cloud metadata
    endpoint or a cluster-internal Service. Refused before any connection is made."""
    with pytest.raises(InvalidSpecError, match=r"not a public address.*init_image_allow_private"):
        _resolve(f"https://{host}/inputs/a.png", store, url_allowlist=[f"https://{host}/inputs/"])


def test_a_loopback_server_is_reached_only_when_private_addresses_are_allowed(
    https_server: tuple[str, ssl.SSLContext], store: FilesystemResultStore
) -> None:
    base, client = https_server
    options = {"url_allowlist": [f"{base}/ok/"], "tls_verify": client}
    with pytest.raises(InvalidSpecError, match=r"127\.0\.0\.1"):
        _resolve(f"{base}/ok/small.png", store, **options)
    assert _resolve(f"{base}/ok/small.png", store, allow_private=True, **options).size == (64, 64)


@pytest.mark.parametrize(
    ("path", "message"),
    [("big-undeclared.png", "limit"), ("redirect.png", "HTTP 302"), ("gone.png", "HTTP 404")],
)
def test_https_refusals(
    https_server: tuple[str, ssl.SSLContext], store: FilesystemResultStore, path: str, message: str
) -> None:
    base, client = https_server
    with pytest.raises(InvalidSpecError, match=message):
        _resolve(
            f"{base}/ok/{path}", store, url_allowlist=[f"{base}/ok/"], tls_verify=client, allow_private=True
        )


def test_a_trickling_server_is_cut_off_at_the_overall_deadline(
    https_server: tuple[str, ssl.SSLContext],
) -> None:
    base, trusting = https_server
    with pytest.raises(InvalidSpecError, match="within 1 s"):
        fetch_url(f"{base}/ok/trickle.png", LIMIT, verify=trusting, deadline_seconds=1, allow_private=True)


def test_img2img_from_inline_and_store_uri(
    registry: ModelRegistry, make_spec, store: FilesystemResultStore
) -> None:
    """Both init image forms run through the real img2img pipeline and stay seed-deterministic."""
    stored = put_image(store, Image.new("RGB", (64, 64), (30, 160, 90)))
    for ref in (_data_uri(_png((64, 64), (30, 160, 90))), stored.uri):
        spec = make_spec(init_image=ref, strength=0.5, steps=4, num_images=2)
        init = _resolve(ref, store, width=spec.width, height=spec.height)
        steps: list[tuple[int, int]] = []

        def record(step: int, total: int, steps: list[tuple[int, int]] = steps) -> None:
            steps.append((step, total))

        output = run_generation(registry, spec, model_name="tiny", seed=9, init_image=init, on_step=record)
        again = run_generation(registry, spec, model_name="tiny", seed=9, init_image=init)
        assert [image.size for image in output.images] == [(64, 64), (64, 64)]
        assert steps == [(1, 2), (2, 2)]  # strength 0.5 of 4 steps
        assert np.array_equal(np.asarray(output.images[0]), np.asarray(again.images[0]))


def test_sdxl_img2img(registry: ModelRegistry, make_spec) -> None:
    spec = make_spec(init_image="data:,unused", strength=0.6, steps=3)
    init = Image.open(io.BytesIO(_png((64, 64)))).convert("RGB")
    output = run_generation(registry, spec, model_name="tiny-xl", seed=1, init_image=init)
    assert output.images[0].size == (64, 64)


def test_strength_leaving_no_step_is_refused(registry: ModelRegistry, make_spec) -> None:
    """The schema refuses steps x strength < 1; the runtime refuses it too for records queued before."""
    with pytest.raises(ValueError, match="steps x strength must be at least 1"):
        make_spec(init_image="data:,unused", strength=0.1, steps=2)
    valid = make_spec(init_image="data:,unused", strength=0.5, steps=2)
    spec = valid.model_copy(update={"strength": 0.1})  # bypasses validation, like an old queued record
    with pytest.raises(InvalidSpecError, match="no denoising step"):
        run_generation(registry, spec, model_name="tiny", seed=1, init_image=Image.new("RGB", (64, 64)))


def test_an_allowlisted_host_that_does_not_resolve_is_invalid_spec(store: FilesystemResultStore) -> None:
    """`.invalid` never resolves (RFC 6761): the job fails with a message naming the host."""
    with pytest.raises(InvalidSpecError, match=r"host images\.invalid does not resolve"):
        _resolve("https://images.invalid/a.png", store, url_allowlist=["https://images.invalid/"])
