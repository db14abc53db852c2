"""The operator's finalizer on GenerationJobs: what it guards and the patches that set it.

A job gets `genjob.io/cleanup` when it is admitted (before its enqueue), so its deletion is
always seen: the finalizing step takes it out of the queue (or flags it for its worker) and
then removes the finalizer.

Why not kopf's finalizers (`@kopf.on.delete`): kopf adds its finalizer to every object the
handler matches, admitted or not, with a write of its own per object, plus its progress and
diff-base annotations, none of which `KubeWriter` counts or batches. Ours is added only to
admitted jobs, in the same write budget as the rest (docs/operator.md), and both patches are
guarded (the object's uid, the finalizer's index) so a replaced object or a moved list is
never patched blindly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genjob_operator.cache import JobView

FINALIZER = "genjob.io/cleanup"


def add_finalizer_ops(view: JobView) -> list[dict[str, Any]]:
    """JSON patch adding our finalizer, guarded by the object's uid."""
    guard = {"op": "test", "path": "/metadata/uid", "value": view.uid}
    if view.finalizers:
        return [guard, {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}]
    return [guard, {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]


def remove_finalizer_ops(view: JobView) -> list[dict[str, Any]] | None:
    """JSON patch removing our finalizer at its index (the test fails if the list moved)."""
    if FINALIZER not in view.finalizers:
        return None
    i = view.finalizers.index(FINALIZER)
    return [
        {"op": "test", "path": "/metadata/uid", "value": view.uid},
        {"op": "test", "path": f"/metadata/finalizers/{i}", "value": FINALIZER},
        {"op": "remove", "path": f"/metadata/finalizers/{i}"},
    ]
