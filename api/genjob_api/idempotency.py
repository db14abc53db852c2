"""`Idempotency-Key`: the same key with the same body returns the same job; a different body
is a conflict (409).

The record `{fingerprint, job_id}` is claimed with one `SET NX EX` before the job is
created, so two concurrent requests with one key cannot both create a job: the loser
gets the winner's job id. The fingerprint is the SHA-256 of the canonical JSON of the
parsed request, so whitespace and key order do not matter. A request that fails
admission releases its record, so the caller can fix the body and retry with the key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis

from genjob.keys import RedisKeys

TTL_SECONDS = 24 * 3600
MAX_KEY_CHARS = 255


def fingerprint(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """`fresh`: this request owns the key and creates `job_id`; else `job_id` is the earlier job
    and `same_body` says whether the bodies match."""

    fresh: bool
    job_id: str
    same_body: bool = True


class IdempotencyStore:
    def __init__(self, client: aredis.Redis, keys: RedisKeys) -> None:
        self.client = client
        self.keys = keys

    async def claim(self, key_id: str, idem_key: str, body_fingerprint: str, job_id: str) -> Claim:
        name = self.keys.idempotency(key_id, hashlib.sha256(idem_key.encode()).hexdigest()[:32])
        record = json.dumps({"fingerprint": body_fingerprint, "job_id": job_id})
        if await self.client.set(name, record, nx=True, ex=TTL_SECONDS):
            return Claim(True, job_id)
        raw = await self.client.get(name)
        if raw is None:  # expired between the two calls: try once more
            if await self.client.set(name, record, nx=True, ex=TTL_SECONDS):
                return Claim(True, job_id)
            raw = await self.client.get(name) or record
        earlier = json.loads(str(raw))
        return Claim(False, earlier["job_id"], earlier["fingerprint"] == body_fingerprint)

    async def release(self, key_id: str, idem_key: str) -> None:
        await self.client.delete(
            self.keys.idempotency(key_id, hashlib.sha256(idem_key.encode()).hexdigest()[:32])
        )
