"""The result store's layout (genjob.result_store) is one contract for the worker that writes and
the gateway that reads: bytes round-trip on the filesystem and a real S3 API (moto's server),
URIs outside the configured store are refused, and the core needs no Pillow for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from genjob.result_store import ResultNotFoundError, build_result_store, result_tenant
from genjob.settings import ResultStoreSettings

PNG = b"\x89PNG\r\n\x1a\n not really an image"


def test_s3_results_are_read_back_and_nothing_outside_the_bucket_prefix(
    s3_settings: ResultStoreSettings,
) -> None:
    stored = build_result_store(s3_settings).put_png(PNG)
    reader = build_result_store(s3_settings)  # the gateway's own instance
    assert reader.open(stored.uri) == PNG
    for uri, why in (
        ("s3://other-bucket/jobs/00/x.png", "is not in s3://genjob-results/jobs/"),
        ("s3://genjob-results/elsewhere/x.png", "is not in s3://genjob-results/jobs/"),
        ("s3://genjob-results/jobs/00/missing.png", "no result at"),
        ("http://genjob-results/jobs/00/x.png", "is not in s3://"),
    ):
        with pytest.raises(ResultNotFoundError, match=why):
            reader.open(uri)


def test_file_results_are_read_back_and_nothing_outside_the_root(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("not an image")
    settings = ResultStoreSettings(path=tmp_path / "results")
    stored = build_result_store(settings).put_png(PNG)
    reader = build_result_store(settings)
    assert reader.open(stored.uri) == PNG
    root = (tmp_path / "results").resolve()
    for outside in (f"file://{tmp_path}/secret.txt", f"file://{root}/../secret.txt"):
        with pytest.raises(ResultNotFoundError, match="outside the result store root"):
            reader.open(outside)
    with pytest.raises(ResultNotFoundError, match="not a file:// URI"):
        reader.open("s3://genjob-results/jobs/00/x.png")
    with pytest.raises(ResultNotFoundError, match="no result at"):
        reader.open(f"file://{root}/00/missing.png")


def test_a_results_uri_names_its_tenant(tmp_path: Path, s3_settings: ResultStoreSettings) -> None:
    """Images of a tenant's jobs live under tenants/<tenant>/; result_tenant reads it back from the
    URI (img2img's init-image check), on both backends."""
    for settings in (ResultStoreSettings(path=tmp_path / "results"), s3_settings):
        store = build_result_store(settings)
        own = store.put_png(PNG, "acme")
        assert "/tenants/acme/" in own.uri and store.put_png(PNG, "acme") == own
        assert result_tenant(store.relative_key(own.uri)) == "acme"
        assert result_tenant(store.relative_key(store.put_png(PNG).uri)) == ""
        assert result_tenant(store.relative_key(store.put_checkpoint("job-1", "step", b"x"))) is None
        with pytest.raises(ValueError, match="cannot name a directory"):
            store.put_png(PNG, "../etc")


def test_the_core_store_does_not_import_pillow() -> None:
    code = "import sys, genjob.result_store; assert 'PIL' not in sys.modules, 'PIL imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
