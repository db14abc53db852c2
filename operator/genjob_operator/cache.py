"""The operator's in-memory view of every GenerationJob it watches.

Kopf's watch feeds it (`observe`) and a full LIST seeds it at start (`replace_all`), so
level-based loops (admission under quota, TTL, the orphan sweep) decide from what exists
instead of from a chain of past events. A newer resourceVersion always wins, so a LIST
and the watch can interleave.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from genjob.jobspec import Phase

FINALIZER = "genjob.io/cleanup"


def _rv(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


@dataclass(frozen=True)
class JobView:
    """What the operator needs of one GenerationJob."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    created: str  # RFC 3339 creationTimestamp; sorts chronologically
    spec: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)
    finalizers: tuple[str, ...] = ()
    deleting: bool = False

    @classmethod
    def from_body(cls, body: Any) -> JobView:
        meta = body.get("metadata", {}) or {}
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            resource_version=meta.get("resourceVersion", "0"),
            created=meta.get("creationTimestamp", "") or "",
            spec=dict(body.get("spec", {}) or {}),
            status=dict(body.get("status", {}) or {}),
            finalizers=tuple(meta.get("finalizers", []) or []),
            deleting=bool(meta.get("deletionTimestamp")),
        )

    @property
    def phase(self) -> Phase | None:
        phase = self.status.get("phase")
        return Phase(phase) if phase else None

    @property
    def reason(self) -> str | None:
        return self.status.get("reason")

    @property
    def admitted(self) -> bool:
        """Carries our finalizer: it was (or is being) enqueued."""
        return FINALIZER in self.finalizers

    @property
    def is_final(self) -> bool:
        return self.phase is not None and self.phase.is_final

    @property
    def waiting_for_admission(self) -> bool:
        return not self.admitted and not self.deleting and self.phase in (None, Phase.PENDING)

    @property
    def order_key(self) -> tuple[str, str, str]:
        """Oldest first; name and namespace break ties of equal timestamps."""
        return (self.created, self.namespace, self.name)


class JobCache:
    """Thread-safe map uid -> JobView."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, JobView] = {}
        self._deleted: set[str] = set()
        self.seeded = threading.Event()

    def observe(self, view: JobView) -> None:
        with self._lock:
            if view.uid in self._deleted:
                return
            old = self._jobs.get(view.uid)
            if old is None or _rv(view.resource_version) >= _rv(old.resource_version):
                self._jobs[view.uid] = view

    def forget(self, uid: str) -> None:
        with self._lock:
            self._jobs.pop(uid, None)
            self._deleted.add(uid)
            if len(self._deleted) > 100_000:
                self._deleted.clear()

    def replace_all(self, views: list[JobView]) -> None:
        """Seed from a full LIST; entries seen since with newer versions are kept."""
        with self._lock:
            fresh = {v.uid: v for v in views if v.uid not in self._deleted}
            for uid, old in self._jobs.items():
                new = fresh.get(uid)
                if new is not None and _rv(old.resource_version) > _rv(new.resource_version):
                    fresh[uid] = old
            self._jobs = fresh
        self.seeded.set()

    def get(self, uid: str) -> JobView | None:
        with self._lock:
            return self._jobs.get(uid)

    def snapshot(self) -> list[JobView]:
        with self._lock:
            return list(self._jobs.values())

    def __contains__(self, uid: object) -> bool:
        with self._lock:
            return uid in self._jobs

    def phase_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for v in self.snapshot():
            key = (v.phase or "New", v.reason or "")
            counts[key] = counts.get(key, 0) + 1
        return counts
