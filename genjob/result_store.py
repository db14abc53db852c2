"""The result store's layout: where images and checkpoints live, as URIs, read and written.

One owner for the contract between the worker (writes) and the gateway (reads): a filesystem
root (default; a PVC in a cluster) or an S3-compatible bucket and prefix (boto3, configurable
endpoint for MinIO and friends). Images are PNG bytes stored content-addressed under
`tenants/<tenant>/<sha256[:2]>/<sha256>.png` (`<sha256[:2]>/<sha256>.png` for a job without a
tenant), so storing the same bytes twice gives the same URI and the write is idempotent (safe
when a job runs more than once), and a URI says whose it is: `result_tenant` reads it back, so
img2img takes a result as its init image only for the tenant that made it. URIs: `file:///abs/root/...` and
`s3://bucket/prefix...`; `open(uri)` accepts only URIs inside the configured store, so a result
can never point a reader at an arbitrary file or bucket.

Denoising checkpoints live in the same store under `checkpoints/<job id>/<name>.ckpt`:
`put_checkpoint` writes one (atomically: a reader sees the old or the new file, never half of
one), `delete_checkpoints` removes all of a job's. They are covered by whatever retention the
store has (an S3 lifecycle rule on the prefix, a cleanup of the PVC), and workers delete
them when the job ends (also for a job that ended away from a worker, e.g. cancelled while
queued: `JobQueue.orphaned_checkpoints`).

Bytes only: encoding images (Pillow) is the worker's (`genjob_worker.results`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from genjob.errors import GenjobError
from genjob.queue.records import check_job_id
from genjob.settings import ResultStoreSettings


class ResultNotFoundError(GenjobError, LookupError):
    """A result URI that is not in this store (foreign location, or no such object)."""


@dataclass(frozen=True)
class StoredPng:
    """Where `put_png` stored the bytes, and what they are."""

    uri: str
    sha256: str
    size_bytes: int


TENANTS_DIR = "tenants/"
CHECKPOINTS_DIR = "checkpoints/"
# A Kubernetes label value (the operator's tenants) or a DNS label (the gateway's): never '/',
# '.' or '..'.
TENANT_DIR_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"


def content_key(sha256: str, tenant: str = "") -> str:
    """Where an image lives, relative to the store's root or prefix."""
    if tenant:
        if not re.fullmatch(TENANT_DIR_PATTERN, tenant):
            raise ValueError(f"tenant {tenant!r} cannot name a directory")
        return f"{TENANTS_DIR}{tenant}/{sha256[:2]}/{sha256}.png"
    return f"{sha256[:2]}/{sha256}.png"


def result_tenant(key: str) -> str | None:
    """The tenant whose job stored the image at `key` (relative to the store): '' for a job
    without a tenant, None when `key` is not an image result (a checkpoint)."""
    if key.startswith(TENANTS_DIR):
        tenant, _, rest = key.removeprefix(TENANTS_DIR).partition("/")
        return tenant if tenant and rest else None
    if key.startswith(CHECKPOINTS_DIR):
        return None
    return ""


def checkpoint_dir(job_id: str) -> str:
    """Where a job's checkpoints live, relative to the store's root or prefix."""
    check_job_id(job_id)  # no path separators or dot segments can reach a path
    return f"{CHECKPOINTS_DIR}{job_id}/"


class ResultStore(Protocol):
    """What the worker, the gateway and img2img need from a store."""

    def put_png(self, data: bytes, tenant: str = "") -> StoredPng: ...

    def open(self, uri: str) -> bytes: ...

    def owns(self, uri: str) -> bool: ...

    def relative_key(self, uri: str) -> str:
        """The URI's key relative to the store (ResultNotFoundError when not in it)."""
        ...

    def put_checkpoint(self, job_id: str, name: str, data: bytes) -> str: ...

    def delete_checkpoints(self, job_id: str) -> None: ...


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(tmp, path)


def _accepted(locate: Callable[[str], object], uri: str) -> bool:
    """Whether a store's bounds check (`locate`) accepts the URI."""
    try:
        locate(uri)
    except ResultNotFoundError:
        return False
    return True


class FilesystemResultStore:
    """Files under `root` (created on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def put_png(self, data: bytes, tenant: str = "") -> StoredPng:
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / content_key(sha, tenant)
        if not path.exists():
            _write_atomically(path, data)
        return StoredPng(uri=path.as_uri(), sha256=sha, size_bytes=len(data))

    def put_checkpoint(self, job_id: str, name: str, data: bytes) -> str:
        """Write (or replace) a checkpoint file atomically; its file:// URI."""
        path = self.root / checkpoint_dir(job_id) / f"{name}.ckpt"
        _write_atomically(path, data)
        return path.as_uri()

    def delete_checkpoints(self, job_id: str) -> None:
        shutil.rmtree(self.root / checkpoint_dir(job_id), ignore_errors=True)

    def _path(self, uri: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            raise ResultNotFoundError(f"{uri!r} is not a file:// URI of this store")
        path = Path(unquote(parsed.path)).resolve()
        if not path.is_relative_to(self.root):
            raise ResultNotFoundError(f"{uri!r} is outside the result store root {self.root}")
        return path

    def owns(self, uri: str) -> bool:
        return _accepted(self._path, uri)

    def relative_key(self, uri: str) -> str:
        return self._path(uri).relative_to(self.root).as_posix()

    def open(self, uri: str) -> bytes:
        path = self._path(uri)
        try:
            return path.read_bytes()
        except OSError:
            raise ResultNotFoundError(f"no result at {uri}") from None


class S3ResultStore:
    """Objects `s3://bucket/<prefix>...` in an S3-compatible bucket."""

    def __init__(self, client: Any, bucket: str, prefix: str = "genjob/") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def put_png(self, data: bytes, tenant: str = "") -> StoredPng:
        sha = hashlib.sha256(data).hexdigest()
        key = self.prefix + content_key(sha, tenant)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="image/png")
        return StoredPng(uri=f"s3://{self.bucket}/{key}", sha256=sha, size_bytes=len(data))

    def put_checkpoint(self, job_id: str, name: str, data: bytes) -> str:
        key = f"{self.prefix}{checkpoint_dir(job_id)}{name}.ckpt"
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/octet-stream")
        return f"s3://{self.bucket}/{key}"

    def delete_checkpoints(self, job_id: str) -> None:
        prefix = self.prefix + checkpoint_dir(job_id)
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        keys = [{"Key": item["Key"]} for item in listing.get("Contents", [])]
        if keys:
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    def _key(self, uri: str) -> str:
        parsed = urlparse(uri)
        key = parsed.path.lstrip("/")
        if parsed.scheme != "s3" or parsed.netloc != self.bucket or not key.startswith(self.prefix):
            raise ResultNotFoundError(f"{uri!r} is not in s3://{self.bucket}/{self.prefix}")
        return key

    def owns(self, uri: str) -> bool:
        return _accepted(self._key, uri)

    def relative_key(self, uri: str) -> str:
        return self._key(uri).removeprefix(self.prefix)

    def open(self, uri: str) -> bytes:
        key = self._key(uri)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            raise ResultNotFoundError(f"no result at {uri}") from None
        data: bytes = response["Body"].read()
        return data


def build_result_store(settings: ResultStoreSettings, *, s3_client: Any = None) -> ResultStore:
    """The configured store; the S3 client comes from boto3's default credential chain unless given."""
    if settings.backend == "filesystem":
        return FilesystemResultStore(settings.path)
    if s3_client is None:
        import boto3

        s3_client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
    assert settings.s3_bucket is not None  # the settings validator requires it for s3
    return S3ResultStore(s3_client, settings.s3_bucket, settings.s3_prefix)
