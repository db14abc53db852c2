"""The chart's worker-own-pod ValidatingAdmissionPolicy on a real kube-apiserver.

The worker Role grants get/patch on every pod of the namespace (RBAC cannot name a Deployment's
random pod names); the policy narrows the worker ServiceAccount to the two busy annotations of the
pod its bound token names. Here the chart's worker ServiceAccount, Role, RoleBinding, policy and
binding (`helm template --show-only`) are applied to a fresh namespace with two pods, and requests
are made with tokens minted for that ServiceAccount: the worker's real KubernetesPodMarker on its
own pod passes, anything else is denied with the policy's message.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from genjob_worker.pod_marker import DELETION_COST, DO_NOT_DISRUPT, KubernetesPodMarker, build_busy_patch

pytestmark = pytest.mark.cluster

CHART = Path(__file__).resolve().parents[2] / "charts" / "genjob"
RELEASE = "gjpolicy"
SA = f"{RELEASE}-genjob-worker"
POLICY = f"{RELEASE}-genjob-worker-own-pod"
TEMPLATES = [
    "serviceaccount.yaml",
    "role.yaml",
    "rolebinding.yaml",
    "validatingadmissionpolicy.yaml",
    "validatingadmissionpolicybinding.yaml",
]
MERGE = "application/merge-patch+json"


@dataclass
class Setup:
    namespace: str
    admin: Any  # CoreV1Api as admin
    token_api: Any  # callable: token -> CoreV1Api authenticated by that token
    mint: Any  # callable: *kubectl create token args -> token


def wait_until(what: str, probe, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def setup(cluster) -> Iterator[Setup]:
    from kubernetes import client, config

    namespace = f"podpolicy-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    args = ["template", RELEASE, str(CHART), "-n", namespace]
    for name in TEMPLATES:
        args += ["--show-only", f"templates/worker/{name}"]
    rendered = cluster.helm(*args).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered) if d]
    assert kinds == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    try:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=rendered)
        admin = client.CoreV1Api(cluster.api_client())
        for name in ("a", "b"):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "w"}, "annotations": {"keep": "me"}},
                "spec": {
                    "serviceAccountName": SA,
                    "containers": [{"name": "worker", "image": "genjob-worker:test"}],
                },
            }
            admin.create_namespaced_pod(namespace, pod)

        def mint(*extra: str) -> str:
            return cluster.kubectl("create", "token", SA, "-n", namespace, *extra).stdout.strip()

        def token_api(token: str) -> Any:
            cfg = client.Configuration()
            config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)
            cfg.cert_file = cfg.key_file = None
            cfg.api_key = {"authorization": f"Bearer {token}"}
            return client.CoreV1Api(client.ApiClient(cfg))

        # The policy is enforced once the API server has loaded it: probe with an empty patch
        # of pod b (a no-op that still goes through admission).
        probe = token_api(mint(*bound_to(admin, namespace, "a")))
        wait_until(
            "the worker-own-pod policy to be enforced",
            lambda: patch_error(probe, namespace, "b", {}) is not None,
        )
        yield Setup(namespace, admin, token_api, mint)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        cluster.kubectl(
            "delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", POLICY, check=False
        )


def bound_to(admin: Any, namespace: str, pod: str) -> list[str]:
    uid = admin.read_namespaced_pod(pod, namespace).metadata.uid
    return ["--bound-object-kind", "Pod", "--bound-object-name", pod, "--bound-object-uid", uid]


def patch_error(api: Any, namespace: str, pod: str, body: dict) -> tuple[int, str] | None:
    """None when the merge patch passes, else (HTTP status, message)."""
    from kubernetes.client.exceptions import ApiException

    try:
        api.patch_namespaced_pod(pod, namespace, body, _content_type=MERGE)
    except ApiException as exc:
        return exc.status, json.loads(exc.body).get("message", exc.body)
    return None


@pytest.fixture(scope="module")
def worker_a(setup: Setup) -> Any:
    """A CoreV1Api authenticated as the worker ServiceAccount with a token bound to pod a."""
    return setup.token_api(setup.mint(*bound_to(setup.admin, setup.namespace, "a")))


def annotations(setup: Setup, pod: str) -> dict[str, str]:
    return setup.admin.read_namespaced_pod(pod, setup.namespace).metadata.annotations or {}


def test_worker_marks_and_clears_its_own_pod(setup: Setup, worker_a: Any) -> None:
    """Ensures the worker's real pod marker (merge patches of the two busy annotations) passes."""
    marker = KubernetesPodMarker(worker_a, "a", setup.namespace)
    marker.set_busy(True)
    assert marker.state is True
    busy = annotations(setup, "a")
    assert busy[DO_NOT_DISRUPT] == "true" and busy[DELETION_COST] == "10000" and busy["keep"] == "me"
    marker.set_busy(False)
    assert marker.state is False
    idle = annotations(setup, "a")
    assert DO_NOT_DISRUPT not in idle and DELETION_COST not in idle and idle["keep"] == "me"


def test_another_pod_is_denied(setup: Setup, worker_a: Any) -> None:
    error = patch_error(worker_a, setup.namespace, "b", build_busy_patch())
    assert error is not None
    status, message = error
    assert status == 403, message
    assert f"worker pod a may only patch its own pod, not pod {setup.namespace}/b" in message
    assert DO_NOT_DISRUPT not in annotations(setup, "b")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"metadata": {"labels": {"app": "other"}}}, "may not change its labels"),
        ({"metadata": {"annotations": {"keep": "changed"}}}, "may not change the annotation(s) keep;"),
        (
            {"metadata": {"annotations": {DO_NOT_DISRUPT: "true", "extra": "x"}}},
            "may not change the annotation(s) extra;",
        ),
        ({"metadata": {"finalizers": ["example.com/hold"]}}, "may not change its finalizers"),
        (
            {"spec": {"containers": [{"name": "worker", "image": "evil:1.0"}]}},
            "may not change its pod spec",
        ),
    ],
    ids=["labels", "other-annotation", "busy-plus-other-annotation", "finalizers", "image"],
)
def test_anything_but_the_busy_annotations_is_denied(
    setup: Setup, worker_a: Any, body: dict, expected: str
) -> None:
    error = patch_error(worker_a, setup.namespace, "a", body)
    assert error is not None, f"{body} was allowed"
    status, message = error
    assert status == 403 and expected in message, message
    assert "it may only set or remove" in message
    assert annotations(setup, "a").get("keep") == "me" and "extra" not in annotations(setup, "a")


def test_other_operations_and_subresources_are_denied_even_if_rbac_allows_them(
    cluster, setup: Setup, worker_a: Any
) -> None:
    """The chart's Role allows only get/patch on pods; should someone grant the worker more, the
    policy still refuses anything but an update of its own pod."""
    from kubernetes.client.exceptions import ApiException

    extra = f"{SA}-extra"
    cluster.kubectl("create", "role", extra, "-n", setup.namespace, "--verb=delete,patch",
                    "--resource=pods,pods/status")  # fmt: skip
    cluster.kubectl("create", "rolebinding", extra, "-n", setup.namespace, f"--role={extra}",
                    f"--serviceaccount={setup.namespace}:{SA}")  # fmt: skip
    try:

        def refused(call, *args: Any) -> str:
            # RBAC changes reach the authorizer a moment after they are written: retry until the
            # refusal is the policy's, not RBAC's.
            message = ""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with pytest.raises(ApiException) as caught:
                    call(*args)
                message = json.loads(caught.value.body)["message"]
                if "ValidatingAdmissionPolicy" in message:
                    return message
                time.sleep(0.5)
            raise AssertionError(message)

        status = {"metadata": {"annotations": {DO_NOT_DISRUPT: "true"}}}
        message = refused(worker_a.patch_namespaced_pod_status, "a", setup.namespace, status)
        assert (
            f"may only patch the annotations of its own pod (a), not update pods/status {setup.namespace}/a"
            in message
        )
        message = refused(worker_a.delete_namespaced_pod, "b", setup.namespace)
        assert f"not delete pods {setup.namespace}/b" in message
        message = refused(worker_a.delete_namespaced_pod, "a", setup.namespace)
        assert f"not delete pods {setup.namespace}/a" in message
    finally:
        cluster.kubectl("delete", "role,rolebinding", extra, "-n", setup.namespace, check=False)
    assert {p.metadata.name for p in setup.admin.list_namespaced_pod(setup.namespace).items} == {"a", "b"}


def test_a_token_not_bound_to_a_pod_is_denied(setup: Setup) -> None:
    unbound = setup.token_api(setup.mint())
    error = patch_error(unbound, setup.namespace, "a", build_busy_patch())
    assert error is not None
    status, message = error
    assert status == 403, message
    assert "token is not bound to a pod" in message
    assert DO_NOT_DISRUPT not in annotations(setup, "a")


def test_other_users_are_not_affected(setup: Setup) -> None:
    """The policy matches only the worker ServiceAccount: the admin still patches labels."""
    assert patch_error(setup.admin, setup.namespace, "b", {"metadata": {"labels": {"app": "w2"}}}) is None
