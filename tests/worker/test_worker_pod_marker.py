"""Pod marking: the merge-patch bodies, idempotence, failures that are never fatal, and when
the marker is active at all."""

from __future__ import annotations

from typing import Any

from genjob_worker.pod_marker import (
    DELETION_COST,
    DO_NOT_DISRUPT,
    MERGE_PATCH,
    KubernetesPodMarker,
    NoPodMarker,
    build_busy_patch,
    build_idle_patch,
    pod_marker_from_environment,
)


def test_busy_patch_sets_both_annotations_as_strings() -> None:
    """Ensures the busy patch sets do-not-disrupt and a high deletion cost (values are strings)."""
    assert build_busy_patch() == {
        "metadata": {"annotations": {"karpenter.sh/do-not-disrupt": "true", DELETION_COST: "10000"}}
    }


def test_idle_patch_deletes_both_annotations_with_nulls() -> None:
    """Ensures the idle patch removes both keys (null deletes a key in a JSON merge patch)."""
    assert build_idle_patch() == {"metadata": {"annotations": {DO_NOT_DISRUPT: None, DELETION_COST: None}}}


class FakeCoreApi:
    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple[str, str, dict[str, Any], str]] = []
        self.fail = fail

    def patch_namespaced_pod(self, name: str, namespace: str, body: dict[str, Any], **kwargs: Any) -> None:
        self.calls.append((name, namespace, body, kwargs["_content_type"]))
        if self.fail:
            self.fail -= 1
            raise RuntimeError("403 Forbidden (injected)")


def test_marker_patches_its_own_pod_only_on_changes() -> None:
    """Ensures the marker patches only when busy/idle changes, with a merge patch on its own pod."""
    api = FakeCoreApi()
    marker = KubernetesPodMarker(api, "worker-abc", "genjob")
    marker.set_busy(True)
    marker.set_busy(True)
    marker.set_busy(False)
    marker.set_busy(False)
    assert [(c[0], c[1], c[3]) for c in api.calls] == [("worker-abc", "genjob", MERGE_PATCH)] * 2
    assert [c[2] for c in api.calls] == [build_busy_patch(), build_idle_patch()]


def test_a_failed_patch_is_logged_and_retried_on_the_next_call() -> None:
    """Ensures a failing API never raises, and the state is re-sent next time."""
    api = FakeCoreApi(fail=1)
    marker = KubernetesPodMarker(api, "w", "ns")
    marker.set_busy(True)
    assert marker.state is None
    marker.set_busy(True)
    assert marker.state is True and len(api.calls) == 2


def test_marker_is_a_no_op_outside_a_cluster() -> None:
    """Ensures no marker without POD_NAME/POD_NAMESPACE, with annotate_pod off, or outside a cluster."""
    env = {"POD_NAME": "w", "POD_NAMESPACE": "ns"}
    assert isinstance(pod_marker_from_environment(True, {}), NoPodMarker)
    assert isinstance(pod_marker_from_environment(False, env), NoPodMarker)
    # No service-account token in this sandbox: load_incluster_config fails, and that is not fatal.
    assert isinstance(pod_marker_from_environment(True, env), NoPodMarker)
