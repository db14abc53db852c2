"""The gateway's result reader reads back what the worker's store wrote (filesystem and a real
S3 API, moto's server), and refuses URIs outside the configured store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from genjob.settings import ResultStoreSettings
from genjob_api.images import ImageNotFoundError, ResultReader
from genjob_worker.results import build_result_store


def _stored_then_read(settings: ResultStoreSettings) -> tuple[str, ResultReader]:
    stored = build_result_store(settings).put_image(Image.new("RGB", (8, 8), (0, 128, 0)))
    reader = ResultReader(settings)
    data = reader.read(stored.uri)
    assert hashlib.sha256(data).hexdigest() == stored.sha256 and data.startswith(b"\x89PNG")
    return stored.uri, reader


def test_s3_results_are_read_back_and_nothing_outside_the_bucket_prefix(
    s3_settings: ResultStoreSettings,
) -> None:
    _, reader = _stored_then_read(s3_settings)
    for uri, why in (
        ("s3://other-bucket/jobs/00/x.png", "outside the configured S3 bucket"),
        ("s3://genjob-results/elsewhere/x.png", "outside the configured S3 bucket"),
        ("s3://genjob-results/jobs/00/missing.png", "cannot read the result object"),
        ("http://genjob-results/jobs/00/x.png", "unsupported result URI scheme"),
    ):
        with pytest.raises(ImageNotFoundError, match=why):
            reader.read(uri)


def test_file_results_are_read_back_and_nothing_outside_the_root(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("not an image")
    uri, reader = _stored_then_read(ResultStoreSettings(path=tmp_path / "results"))
    root = uri.split("://", 1)[1].rsplit("/", 2)[0]
    for outside in (f"file://{tmp_path}/secret.txt", f"file://{root}/../../secret.txt"):
        with pytest.raises(ImageNotFoundError, match="outside the configured result store"):
            reader.read(outside)
    with pytest.raises(ImageNotFoundError, match="gone"):
        reader.read(f"file://{root}/00/missing.png")
