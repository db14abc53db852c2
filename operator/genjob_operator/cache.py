"""The operator's in-memory view of every GenerationJob it watches.

Kopf's watch feeds it (`observe`), the responses of the operator's own writes feed it
(`written`) and a full LIST seeds it at start (`replace_all`), so level-based loops (admission
under quota, TTL, the orphan sweep) decide from what exists instead of from a chain of past
events.

Why not kopf's own object cache (its `memo`/indexes): those are fed by the watch only, so right
after a write they still show the object as it was, and the admission loop would act twice on
one job (a second finalizer, a second enqueue). Our own writes' responses are newer than
anything the watch has delivered yet.

resourceVersions are opaque strings (Kubernetes promises equality, not order), so nothing here
compares them as numbers. Two rules keep the view from going backwards instead:
- the watch delivers an object's versions in order, so after our own write (version W) the
  events it delivers before W are older than W. They are held back until W itself arrives
  (then dropped). kopf delivers only the latest of a burst of events, so W may never arrive
  when a newer version followed it at once: the last held event (the newest delivered) is
  applied once `catch_up_seconds` have passed since our write;
- a LIST may race the watch: an entry observed after the LIST began is kept over the LIST's.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from genjob.jobspec import Phase
from genjob_operator.finalizers import FINALIZER


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
        """New or Pending: admitted only once the queue has it (a finalizer proves nothing: a
        user can set it at creation)."""
        return not self.deleting and self.phase in (None, Phase.PENDING)

    @property
    def order_key(self) -> tuple[str, str, str]:
        """Oldest first; name and namespace break ties of equal timestamps."""
        return (self.created, self.namespace, self.name)


@dataclass
class _OwnWrite:
    resource_version: str  # the version our write produced; the watch has not delivered it yet
    at: float  # monotonic
    held: JobView | None = None  # the latest watch event delivered since (maybe older than ours)


class JobCache:
    """Thread-safe map uid -> JobView."""

    def __init__(self, catch_up_seconds: float = 3.0) -> None:
        self.catch_up_seconds = catch_up_seconds
        self._lock = threading.Lock()
        self._jobs: dict[str, JobView] = {}
        self._seen_at: dict[str, int] = {}  # uid -> observation sequence number
        self._own_writes: dict[str, _OwnWrite] = {}
        self._sequence = itertools.count(1)
        self._deleted: set[str] = set()
        self.seeded = threading.Event()

    def _store(self, view: JobView) -> None:
        self._jobs[view.uid] = view
        self._seen_at[view.uid] = next(self._sequence)

    def observe(self, view: JobView) -> bool:
        """A watch event (in order for each object). False: held back (see the module docstring)
        for at most `catch_up_seconds`."""
        with self._lock:
            if view.uid in self._deleted:
                return True
            own = self._own_writes.get(view.uid)
            if own is not None:
                if view.resource_version == own.resource_version:
                    del self._own_writes[view.uid]  # the watch caught up with our write
                elif time.monotonic() - own.at < self.catch_up_seconds:
                    own.held = view
                    return False
                else:
                    del self._own_writes[view.uid]
            self._store(view)
            return True

    def _apply_expired_holds(self) -> None:
        """Called with the lock held: writes whose version the watch skipped give way to the
        newest event delivered since."""
        now = time.monotonic()
        for uid, own in list(self._own_writes.items()):
            if now - own.at >= self.catch_up_seconds:
                del self._own_writes[uid]
                if own.held is not None:
                    self._store(own.held)

    def written(self, view: JobView) -> None:
        """The object as our own write left it (the API server's response)."""
        with self._lock:
            if view.uid in self._deleted:
                return
            self._store(view)
            self._own_writes[view.uid] = _OwnWrite(view.resource_version, time.monotonic())

    def begin_list(self) -> int:
        """Call before a LIST; pass the result to `replace_all`."""
        with self._lock:
            return next(self._sequence)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._jobs.pop(uid, None)
            self._seen_at.pop(uid, None)
            self._own_writes.pop(uid, None)
            self._deleted.add(uid)
            if len(self._deleted) > 100_000:
                self._deleted.clear()

    def replace_all(self, views: list[JobView], listed_from: int) -> None:
        """Seed from a full LIST that began at `listed_from` (`begin_list`); entries observed
        since then are newer than the LIST's and are kept."""
        with self._lock:
            fresh = {v.uid: v for v in views if v.uid not in self._deleted}
            for uid, old in self._jobs.items():
                if uid in fresh and self._seen_at.get(uid, 0) > listed_from:
                    fresh[uid] = old
            self._jobs = fresh
            for uid in fresh:
                self._seen_at.setdefault(uid, listed_from)
        self.seeded.set()

    def get(self, uid: str) -> JobView | None:
        with self._lock:
            self._apply_expired_holds()
            return self._jobs.get(uid)

    def snapshot(self) -> list[JobView]:
        with self._lock:
            self._apply_expired_holds()
            return list(self._jobs.values())

    def __contains__(self, uid: object) -> bool:
        with self._lock:
            self._apply_expired_holds()
            return uid in self._jobs

    def phase_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for v in self.snapshot():
            key = (v.phase or "New", v.reason or "")
            counts[key] = counts.get(key, 0) + 1
        return counts
