"""Fakes for the operator's unit tests: an in-memory stand-in for KubeWriter."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from genjob_operator.cache import JobCache, JobView
from genjob_operator.finalizers import FINALIZER
from genjob_operator.kube import ObjectGone
from genjob_operator.metrics import OperatorMetrics

_rv = itertools.count(100)
_uid = itertools.count(1)


def job_body(name: str, ns: str = "team-a", created: str = "2026-01-01T00:00:00Z", **spec: Any) -> dict:
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{name}-{next(_uid)}",
            "resourceVersion": str(next(_rv)),
            "creationTimestamp": created,
        },
        "spec": {"tier": "free", "prompt": "a fox", "width": 64, "height": 64, "steps": 4, **spec},
    }


class FakeKube:
    """Records every write; objects live in a dict keyed by uid."""

    def __init__(self, labels: dict[str, dict[str, str]] | None = None) -> None:
        self.objects: dict[str, JobView] = {}
        self.writes: list[tuple[str, str, Any]] = []
        self.events: list[tuple[str, str]] = []
        self.labels = labels or {}
        self.fail_status = False

    def add(self, body: dict) -> JobView:
        view = JobView.from_body(body)
        self.objects[view.uid] = view
        return view

    def _bump(self, view: JobView, **changes: Any) -> JobView:
        current = self.objects.get(view.uid)
        if current is None:
            raise ObjectGone(view.name)
        new = JobView(**{**current.__dict__, **changes, "resource_version": str(next(_rv))})
        self.objects[view.uid] = new
        return new

    def add_finalizer(self, view: JobView) -> JobView:
        self.writes.append(("finalizer_add", view.name, None))
        return self._bump(view, finalizers=(*view.finalizers, FINALIZER))

    def remove_finalizer(self, view: JobView) -> JobView | None:
        self.writes.append(("finalizer_remove", view.name, None))
        return self._bump(view, finalizers=tuple(f for f in view.finalizers if f != FINALIZER))

    def patch_status(self, view: JobView, status: dict[str, Any]) -> JobView:
        if self.fail_status:
            raise RuntimeError("API server unavailable")
        self.writes.append(("status", view.name, status))
        current = self.objects.get(view.uid)
        if current is None:
            raise ObjectGone(view.name)
        merged = dict(current.status)
        for k, v in status.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        return self._bump(view, status=merged)

    def delete_job(self, view: JobView) -> None:
        self.writes.append(("delete", view.name, None))
        self._bump(view, deleting=True)

    def namespace_labels(self, name: str) -> dict[str, str]:
        return self.labels.get(name, {})

    def post_event(
        self, namespace: str, name: str, uid: str, reason: str, message: str, warning: bool
    ) -> None:
        self.events.append((name, reason))

    def writes_of(self, kind: str) -> list[tuple[str, str, Any]]:
        return [w for w in self.writes if w[0] == kind]


class SyncEvents:
    """EventPoster stand-in that posts at once."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube

    def post(
        self, namespace: str, name: str, uid: str, reason: str, message: str, warning: bool = False
    ) -> None:
        self.kube.post_event(namespace, name, uid, reason, message, warning)


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def metrics() -> OperatorMetrics:
    return OperatorMetrics()


@pytest.fixture
def cache() -> JobCache:
    c = JobCache()
    c.seeded.set()
    return c
