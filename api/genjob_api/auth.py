"""API keys: loaded from a file (a mounted Kubernetes Secret in a cluster), stored hashed.

The file is YAML or JSON: either a list of entries or `{"keys": [...]}`. An entry is
`{key_sha256, tenant, tier, admin?, id?, rate_limit_per_minute?, webhook_secret?}`; `id`
(default: the first 12 hex digits of the hash) names the key in logs, rate limits and
idempotency records. Only the SHA-256 of a key is stored; `genjob apikey hash` prints it.
Lookups are in memory (no Redis round trip); the file is re-read when its mtime changes,
checked at most every `reload_seconds`, so rotating the Secret needs no restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from genjob.jobspec import TENANT_PATTERN
from genjob.tiers import TIER_NAME_PATTERN

KEY_PREFIX = "gj_"


class ApiKeyEntry(BaseModel):
    """One key of the keys file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    tenant: str = Field(..., pattern=TENANT_PATTERN)
    tier: str = Field(..., pattern=TIER_NAME_PATTERN)
    admin: bool = False
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    rate_limit_per_minute: int | None = Field(None, ge=1)
    webhook_secret: str | None = Field(None, min_length=16)

    @property
    def key_id(self) -> str:
        return self.id or self.key_sha256[:12]


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of a request."""

    key_id: str
    tenant: str
    tier: str
    admin: bool
    rate_limit_per_minute: int | None
    webhook_secret: str | None


class KeysFileError(ValueError):
    """The API keys file is missing or malformed."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A new random API key (shown once; store only its hash)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """A new Standard Webhooks signing secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def parse_keys(text: str, source: str) -> list[ApiKeyEntry]:
    try:
        data: Any = yaml.safe_load(text) if text.strip() else []
    except yaml.YAMLError as exc:
        raise KeysFileError(f"{source}: not valid YAML/JSON: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("keys", [])
    if not isinstance(data, list):
        raise KeysFileError(f"{source}: expected a list of keys or {{'keys': [...]}}")
    try:
        entries = [ApiKeyEntry.model_validate(item) for item in data]
    except ValueError as exc:
        raise KeysFileError(f"{source}: invalid key entry: {exc}") from exc
    ids = [e.key_id for e in entries]
    if len(set(ids)) != len(ids):
        raise KeysFileError(f"{source}: key ids must be unique")
    return entries


class ApiKeyStore:
    """Maps a presented key to its caller via the key's SHA-256."""

    def __init__(self, path: Path | None, reload_seconds: float = 5.0) -> None:
        self.path = path
        self.reload_seconds = reload_seconds
        self._by_hash: dict[str, Caller] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        if path is not None:
            self._load()

    @classmethod
    def from_entries(cls, entries: list[ApiKeyEntry]) -> ApiKeyStore:
        store = cls(None)
        store._by_hash = {e.key_sha256: _caller(e) for e in entries}
        return store

    @property
    def configured(self) -> bool:
        return bool(self._by_hash) or self.path is not None

    def _load(self) -> None:
        assert self.path is not None
        try:
            stat = self.path.stat()
            text = self.path.read_text()
        except OSError as exc:
            raise KeysFileError(f"cannot read API keys file {self.path}: {exc}") from exc
        entries = parse_keys(text, str(self.path))
        self._by_hash = {e.key_sha256: _caller(e) for e in entries}
        self._mtime = stat.st_mtime

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if self.path is None or now - self._checked < self.reload_seconds:
            return
        with self._lock:
            self._checked = now
            try:
                if self.path.stat().st_mtime != self._mtime:
                    self._load()
            except (OSError, KeysFileError):
                pass  # keep serving the last good keys; the file may be mid-rotation

    def by_id(self, key_id: str) -> Caller | None:
        """The caller of a key id (webhook delivery looks up the signing secret this way)."""
        self._maybe_reload()
        return next((c for c in self._by_hash.values() if c.key_id == key_id), None)

    def lookup(self, key: str) -> Caller | None:
        self._maybe_reload()
        return self._by_hash.get(hash_key(key))


def _caller(e: ApiKeyEntry) -> Caller:
    return Caller(e.key_id, e.tenant, e.tier, e.admin, e.rate_limit_per_minute, e.webhook_secret)


def entry_json(key: str, tenant: str, tier: str, admin: bool = False, key_id: str | None = None) -> str:
    entry: dict[str, Any] = {"key_sha256": hash_key(key), "tenant": tenant, "tier": tier, "admin": admin}
    if key_id:
        entry["id"] = key_id
    return json.dumps(entry)
