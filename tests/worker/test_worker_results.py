"""Result stores: content-addressed filesystem store and an S3 store against a real local S3 server (moto)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from genjob.result_store import FilesystemResultStore, ResultNotFoundError, S3ResultStore, build_result_store
from genjob.settings import ResultStoreSettings
from genjob_worker.results import encode_png, put_image


def _image(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, color)


def test_filesystem_store_is_content_addressed(tmp_path: Path) -> None:
    """Same pixels -> same URI and one file; the sha256 and size describe the stored PNG."""
    store = FilesystemResultStore(tmp_path / "results")
    first = put_image(store, _image((255, 0, 0)))
    again = put_image(store, _image((255, 0, 0)))
    other = put_image(store, _image((0, 0, 255)))
    assert first == again and other.uri != first.uri
    data = store.open(first.uri)
    assert hashlib.sha256(data).hexdigest() == first.sha256 and len(data) == first.size_bytes
    assert first.uri == (tmp_path / "results" / first.sha256[:2] / f"{first.sha256}.png").resolve().as_uri()
    assert (first.width, first.height) == (64, 48)
    assert Image.open(io.BytesIO(data)).getpixel((0, 0)) == (255, 0, 0)
    assert len(list((tmp_path / "results").rglob("*.png"))) == 2
    assert not list((tmp_path / "results").rglob("*.tmp"))


def test_filesystem_store_refuses_uris_outside_its_root(tmp_path: Path) -> None:
    store = FilesystemResultStore(tmp_path / "results")
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"x")
    for uri in (secret.as_uri(), (tmp_path / "results" / ".." / "secret.png").as_uri(), "s3://b/k.png"):
        assert not store.owns(uri)
        with pytest.raises(ResultNotFoundError):
            store.open(uri)
    with pytest.raises(ResultNotFoundError, match="no result"):
        store.open((tmp_path / "results" / "ab" / "missing.png").as_uri())


def test_png_encoding_is_deterministic() -> None:
    assert encode_png(_image((1, 2, 3))) == encode_png(_image((1, 2, 3)))


def test_s3_store_round_trip(s3_settings: ResultStoreSettings) -> None:
    store = build_result_store(s3_settings)
    assert isinstance(store, S3ResultStore)
    result = put_image(store, _image((0, 128, 0)))
    assert result.uri == f"s3://genjob-results/jobs/{result.sha256[:2]}/{result.sha256}.png"
    assert put_image(store, _image((0, 128, 0))) == result
    data = store.open(result.uri)
    assert hashlib.sha256(data).hexdigest() == result.sha256 and len(data) == result.size_bytes
    head = store.client.head_object(Bucket="genjob-results", Key=result.uri.split("/", 3)[3])
    assert head["ContentType"] == "image/png"
    assert store.owns(result.uri) and not store.owns("s3://other-bucket/jobs/x.png")
    with pytest.raises(ResultNotFoundError, match="no result"):
        store.open("s3://genjob-results/jobs/00/missing.png")
    with pytest.raises(ResultNotFoundError):
        store.open("s3://genjob-results/elsewhere/x.png")


def test_build_result_store_defaults_to_filesystem(tmp_path: Path) -> None:
    store = build_result_store(ResultStoreSettings(path=tmp_path))
    assert isinstance(store, FilesystemResultStore) and store.root == tmp_path.resolve()
