"""Leader election on a coordination.k8s.io/v1 Lease, so two replicas are safe.

Only the leader runs kopf and the background loops; a standby waits for the Lease. Expiry
is judged the way client-go does it: by when *this* process last saw the record change
(monotonic clock), never by comparing another machine's clock. A leader that cannot renew
within the lease duration stops acting (the process exits and is restarted), so two
leaders never act for longer than one renewal period. Writes: one Lease update per
`renew_seconds` (cluster-wide, not per job).

Why not kopf's peering: it needs its own KopfPeering CRD and objects, and it pauses
lower-priority peers when it sees others rather than electing one leader with a bounded
overlap; a coordination.k8s.io Lease is what Kubernetes' own controllers use and needs no CRD
(kopf runs with `peering.standalone`, see handlers.py).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

import structlog
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

log = structlog.get_logger("genjob.operator.leader")


def _now() -> dt.datetime:
    return dt.datetime.now(tz=dt.UTC)


class LeaseElector:
    def __init__(
        self,
        api: k8s.CoordinationV1Api,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 15,
        renew_seconds: float = 5.0,
    ) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self._observed: tuple[str | None, str | None] | None = None
        self._observed_at = 0.0
        self.is_leader = False

    def _spec(self, transitions: int, acquire: dt.datetime | None) -> k8s.V1LeaseSpec:
        now = _now()
        return k8s.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.lease_seconds,
            acquire_time=acquire or now,
            renew_time=now,
            lease_transitions=transitions,
        )

    def try_acquire_or_renew(self) -> bool:
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name=self.name), spec=self._spec(0, None))
            try:
                self.api.create_namespaced_lease(self.namespace, body)
            except ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
            self.is_leader = True
            return True
        spec = lease.spec or k8s.V1LeaseSpec()
        record = (spec.holder_identity, str(spec.renew_time))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        duration = spec.lease_duration_seconds or self.lease_seconds
        expired = time.monotonic() > self._observed_at + duration
        mine = spec.holder_identity == self.identity
        if not (mine or not spec.holder_identity or expired):
            self.is_leader = False
            return False
        transitions = (spec.lease_transitions or 0) + (0 if mine else 1)
        lease.spec = self._spec(transitions, spec.acquire_time if mine else None)
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:  # someone else wrote first
                self.is_leader = False
                return False
            raise
        if not mine:
            log.info("acquired leadership", lease=f"{self.namespace}/{self.name}", identity=self.identity)
        self.is_leader = True
        return True

    def wait_until_leader(self, stop: threading.Event, retry_seconds: float = 2.0) -> bool:
        """Block until this process holds the Lease (True) or `stop` is set (False)."""
        while not stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    return True
            except Exception as exc:
                log.warning("leader election attempt failed", error=str(exc))
            stop.wait(retry_seconds)
        return False

    def keep_renewing(self, stop: threading.Event, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew in a thread; call `on_lost` if the Lease cannot be renewed in time."""

        def loop() -> None:
            last_ok = time.monotonic()
            while not stop.wait(self.renew_seconds):
                try:
                    if self.try_acquire_or_renew():
                        last_ok = time.monotonic()
                        continue
                    log.error("leadership lost to another replica")
                except Exception as exc:
                    log.warning("lease renewal failed", error=str(exc))
                    if time.monotonic() - last_ok < self.lease_seconds - self.renew_seconds:
                        continue
                self.is_leader = False
                on_lost()
                return

        thread = threading.Thread(target=loop, name="lease-renewer", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Give the Lease up on a clean shutdown so a standby takes over at once."""
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except Exception as exc:
            log.warning("releasing the lease failed", error=str(exc))
        self.is_leader = False
