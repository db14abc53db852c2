"""Reads result images back from the configured result store (filesystem root or S3).

The gateway does not import the worker, so this is a small reader of the store layout
the worker writes: `file://` URIs under `results.path`, `s3://bucket/prefix...` objects.
A URI outside the configured store is refused (a result can never point the gateway at
an arbitrary file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from genjob.settings import ResultStoreSettings


class ImageNotFoundError(LookupError):
    """The URI is not in the configured store, or the object is gone."""


class ResultReader:
    def __init__(self, settings: ResultStoreSettings, s3_client: Any = None) -> None:
        self.settings = settings
        self.root = Path(settings.path).resolve()
        self._s3 = s3_client

    def read(self, uri: str) -> bytes:
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            return self._read_file(parsed.netloc, parsed.path)
        if parsed.scheme == "s3":
            return self._read_s3(parsed.netloc, parsed.path.lstrip("/"))
        raise ImageNotFoundError(f"unsupported result URI scheme in {uri!r}")

    def _read_file(self, netloc: str, raw_path: str) -> bytes:
        path = Path(unquote(raw_path)).resolve()
        if netloc not in ("", "localhost") or not path.is_relative_to(self.root):
            raise ImageNotFoundError("result is outside the configured result store")
        try:
            return path.read_bytes()
        except OSError:
            raise ImageNotFoundError("result file is gone") from None

    def _read_s3(self, bucket: str, key: str) -> bytes:
        s = self.settings
        if s.backend != "s3" or bucket != s.s3_bucket or not key.startswith(s.s3_prefix):
            raise ImageNotFoundError("result is outside the configured S3 bucket and prefix")
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3", endpoint_url=s.s3_endpoint_url, region_name=s.s3_region)
        try:
            data: bytes = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return data
        except Exception as exc:
            raise ImageNotFoundError(f"cannot read the result object: {type(exc).__name__}") from None
