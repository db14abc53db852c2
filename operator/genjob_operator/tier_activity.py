"""Which tiers have work, as the leader knows it: the state KEDA's push trigger streams.

A tier is *active* while its pending list or its in-flight set is not empty, the same test
as the ScaledObject's redis triggers (`pending + inflight > 0`). Two inputs keep it current:

- `note_work(tier)`: the admission loop queued a job. The tier turns active at once, with
  no Redis read, which is what removes KEDA's polling delay for a pool at zero.
- `observe(counts, read_from)`: the reaper's periodic queue counts (every
  `reaper_interval_seconds`). This is the level-based truth: it turns idle tiers inactive
  and catches work that reached Redis another way (a retry whose backoff passed, another
  producer). A count read that started before a `note_work` cannot undo it (the job may
  not have been in Redis yet when the counts were read), hence `read_from`.

Streams wait on `wait_change`; `close()` (the leader stepping down) wakes them all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping


class UnknownTier(KeyError):
    """A tier name that is not in the settings' tiers."""


class TierActivity:
    def __init__(self, tiers: Iterable[str]) -> None:
        self._active = dict.fromkeys(tiers, False)
        self._noted_at = dict.fromkeys(self._active, 0)  # sequence number of the last note_work
        self._seq = 0
        self._closed = False
        self._changed = threading.Condition()

    @property
    def tiers(self) -> list[str]:
        return list(self._active)

    def _check(self, tier: str) -> None:
        if tier not in self._active:
            raise UnknownTier(tier)

    def is_active(self, tier: str) -> bool:
        self._check(tier)
        with self._changed:
            return self._active[tier]

    @property
    def closed(self) -> bool:
        return self._closed

    def note_work(self, tier: str) -> None:
        """A job was queued for `tier`: it is active from now on, until counts say otherwise."""
        self._check(tier)
        with self._changed:
            self._seq += 1
            self._noted_at[tier] = self._seq
            if not self._active[tier]:
                self._active[tier] = True
                self._changed.notify_all()

    def begin_read(self) -> int:
        """Call before reading the counts that will be passed to `observe`."""
        with self._changed:
            return self._seq

    def observe(self, counts: Mapping[str, int], read_from: int) -> None:
        """`counts`: pending + in-flight per tier, read after `begin_read()` returned `read_from`."""
        with self._changed:
            changed = False
            for tier, count in counts.items():
                if tier not in self._active:
                    continue
                active = count > 0
                if not active and self._noted_at[tier] > read_from:
                    continue  # queued after the read began: the counts may predate the job
                if self._active[tier] != active:
                    self._active[tier] = active
                    changed = True
            if changed:
                self._changed.notify_all()

    def wait_change(self, tier: str, seen: bool | None, timeout: float) -> bool | None:
        """The tier's state once it differs from `seen` (at once if `seen` is None), or `seen`
        after `timeout` seconds without a change; None once closed."""
        self._check(tier)
        with self._changed:
            self._changed.wait_for(lambda: self._closed or self._active[tier] != seen, timeout)
            if self._closed:
                return None
            return self._active[tier]

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
