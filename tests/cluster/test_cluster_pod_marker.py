"""The worker's pod marker against a real kube-apiserver: the merge patches set and clear the
busy annotations on a real Pod object, and the worker loop marks its pod busy exactly while it
runs a job (RBAC-free: the test client is admin)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from genjob.jobspec import GenerationJobSpec
from genjob.localredis import RedisServer
from genjob.queue import JobState
from genjob.settings import GenjobSettings
from genjob_worker.generate import GenerationOutput, StepCallback
from genjob_worker.models import ModelRegistry
from genjob_worker.pod_marker import DELETION_COST, DO_NOT_DISRUPT, KubernetesPodMarker
from genjob_worker.tiny_model import build_tiny_pipeline
from tests.support.worker_harness import InProcessWorker, enqueue_job

pytestmark = pytest.mark.cluster

POD = "worker-0"


@pytest.fixture
def pod(cluster) -> Iterator[tuple[Any, str]]:
    """A CoreV1Api and the namespace of a fresh Pod `worker-0` with one unrelated annotation."""
    from kubernetes import client

    namespace = f"marker-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        core = client.CoreV1Api(cluster.api_client())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # pods need the namespace's default ServiceAccount
            if cluster.kubectl("-n", namespace, "get", "sa", "default", check=False).returncode == 0:
                break
            time.sleep(0.5)
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": POD, "annotations": {"keep": "me"}},
            "spec": {"containers": [{"name": "worker", "image": "genjob-worker:test"}]},
        }
        core.create_namespaced_pod(namespace, body)
        yield core, namespace
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def annotations(core: Any, namespace: str) -> dict[str, str]:
    return core.read_namespaced_pod(POD, namespace).metadata.annotations or {}


def test_pod_marker_sets_and_clears_annotations(pod: tuple[Any, str]) -> None:
    """Ensures set_busy(True) adds do-not-disrupt and the deletion cost, set_busy(False) removes
    both, and other annotations are left alone."""
    core, namespace = pod
    marker = KubernetesPodMarker(core, POD, namespace)

    marker.set_busy(True)
    busy = annotations(core, namespace)
    assert marker.state is True
    assert busy[DO_NOT_DISRUPT] == "true" and busy[DELETION_COST] == "10000"
    assert busy["keep"] == "me"

    marker.set_busy(False)
    idle = annotations(core, namespace)
    assert marker.state is False
    assert DO_NOT_DISRUPT not in idle and DELETION_COST not in idle
    assert idle["keep"] == "me"


class AnnotationSpy:
    """Delegates to the real runtime, recording the pod's annotations while the pipeline runs."""

    def __init__(self, inner: Any, core: Any, namespace: str) -> None:
        self.inner, self.core, self.namespace = inner, core, namespace
        self.seen: list[dict[str, str]] = []

    def generate(
        self,
        specs: Sequence[GenerationJobSpec],
        *,
        model_name: str,
        seeds: Sequence[int],
        on_step: StepCallback,
        **options: Any,
    ) -> list[GenerationOutput]:
        self.seen.append(annotations(self.core, self.namespace))
        return self.inner.generate(specs, model_name=model_name, seeds=seeds, on_step=on_step, **options)


def test_worker_loop_marks_its_pod_busy_only_while_running_a_job(
    pod: tuple[Any, str], redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Ensures the real worker loop (real redis-server, tiny pipeline) has its pod annotated
    do-not-disrupt while a job runs, and clears the marks at its next, empty, claim."""
    core, namespace = pod
    model_dir = build_tiny_pipeline(tmp_path / "tiny", "sd")
    settings = GenjobSettings(
        redis={"url": redis_server.url},
        results={"path": tmp_path / "results"},
        models={"tiny": {"source": str(model_dir), "dtype": "float32", "memory_class": "tiny"}},
        worker={"idle_block_seconds": 0.1, "http_port": 0},
    )
    registry = ModelRegistry(settings.models, device="cpu")
    marker = KubernetesPodMarker(core, POD, namespace)
    plain = InProcessWorker(settings, registry)
    spy = AnnotationSpy(plain.generator, core, namespace)
    worker = InProcessWorker(settings, registry, generator=spy, pod_marker=marker)

    enqueue_job(worker.queue, "marked")
    assert worker.loop.claim_and_run() == 1
    assert worker.queue.get("marked").state == JobState.SUCCEEDED
    [during] = spy.seen
    assert during[DO_NOT_DISRUPT] == "true" and during[DELETION_COST] == "10000"

    assert worker.loop.claim_and_run() == 0  # idle: the marks go
    after = annotations(core, namespace)
    assert DO_NOT_DISRUPT not in after and DELETION_COST not in after and after["keep"] == "me"
