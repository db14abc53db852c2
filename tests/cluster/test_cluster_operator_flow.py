"""The operator against the real control plane, a real redis-server and real worker
processes on the tiny model. Each test gets its own namespace, Redis key prefix and
leader Lease, and starts the operator (`genjob operator`) and workers as processes.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from genjob.connect import job_queue
from genjob.crd import GROUP, PLURAL, VERSION
from genjob.localredis import RedisServer, free_port
from genjob.queue import JobState, read_history
from genjob.settings import GenjobSettings
from tests.support.operator_harness import OperatorProcess

from .conftest import wait_for as _wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
QUEUE = {"lease_seconds": 3, "retry_backoff_base_seconds": 0.2, "retry_backoff_max_seconds": 1}
LONG = {"width": 512, "height": 512, "steps": 30}  # ~30 s on 2 CPU cores: time to act mid-run
MEDIUM = {"width": 256, "height": 256, "steps": 30}


def wait_for(what: str, probe: Any, timeout: float = 60.0, interval: float = 0.2, logs: Any = ()) -> Any:
    """The shared poller with this module's defaults."""
    return _wait_for(what, probe, timeout, interval, logs)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import subprocess
    import sys

    dest = tmp_path_factory.mktemp("model") / "tiny"
    subprocess.run(
        [sys.executable, "-m", "genjob.cli", "model", "make-tiny", str(dest)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return dest


class Stack:
    """One test's namespace, queue, operator and worker processes."""

    def __init__(self, cluster, redis_server, model_dir: Path, tmp: Path) -> None:
        from kubernetes import client as k8s

        from tests.support.worker_harness import worker_environment

        self.cluster, self.tmp, self.model_dir = cluster, tmp, model_dir
        self.ns = f"op-{uuid.uuid4().hex[:8]}"
        cluster.kubectl("create", "namespace", self.ns)
        self.api = cluster.api_client()
        self.custom = k8s.CustomObjectsApi(self.api)
        self.core = k8s.CoreV1Api(self.api)
        self.settings = GenjobSettings(redis={"url": redis_server.url, "key_prefix": self.ns}, queue=QUEUE)
        self.queue = job_queue(self.settings)
        env = worker_environment(
            redis_url=redis_server.url,
            model_dir=model_dir,
            results_dir=tmp / "results",
            http_port=0,
            queue=QUEUE,
            heartbeat_interval_seconds=0.5,
            annotate_pod=False,
        )
        env.update(cluster.env())
        env.update(
            GENJOB_REDIS__KEY_PREFIX=self.ns,
            GENJOB_OPERATOR__REAPER_INTERVAL_SECONDS="0.5",
            GENJOB_OPERATOR__PEERING_NAME=f"genjob-{self.ns}",
            GENJOB_OPERATOR__HTTP_PORT="0",
            # The tests spread jobs over tenants with spec.owner in one namespace.
            GENJOB_OPERATOR__OWNER_NAMESPACES=json.dumps({self.ns: ["*"]}),
        )
        self.env = env
        self.procs: list = []

    def operator(
        self, name: str = "op-a", http_port: int = 0, lease_namespace: str | None = None
    ) -> OperatorProcess:
        env = {**self.env, "GENJOB_OPERATOR__HTTP_PORT": str(http_port)}
        args = [
            "--namespace",
            self.ns,
            "--lease-namespace",
            lease_namespace or self.ns,
            "--identity",
            name,
            "--lease-seconds",
            "4",
        ]
        proc = OperatorProcess(env, self.tmp / f"{name}.log", args).start()
        self.procs.append(proc)
        return proc

    def worker(self, name: str = "w1", **settings: Any):
        """A worker process; `settings` are `worker` settings fields (e.g. drain_grace_seconds)."""
        from tests.support.worker_harness import WorkerProcess

        env = {**self.env, "GENJOB_WORKER__HTTP_PORT": str(free_port()), "GENJOB_WORKER__NAME": name}
        env.update({f"GENJOB_WORKER__{field.upper()}": str(value) for field, value in settings.items()})
        proc = WorkerProcess(env, self.tmp / f"{name}.log", ["--tiers", "free", "--device", "cpu"]).start()
        self.procs.append(proc)
        proc.wait_ready()
        return proc

    def create(self, name: str, **spec) -> str:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "GenerationJob",
            "metadata": {"name": name},
            "spec": {"tier": "free", "prompt": "a red fox", "width": 64, "height": 64, "steps": 4, **spec},
        }
        created = self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)
        return created["metadata"]["uid"]

    def get(self, name: str) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def status(self, name: str) -> dict:
        return (self.get(name) or {}).get("status", {})

    def wait_phase(self, name: str, *phases: str, timeout: float = 60.0) -> dict:
        return wait_for(
            f"{name} in {phases} (now {self.status(name)})",
            lambda: (s := self.status(name)).get("phase") in phases and s,
            timeout,
            logs=self.procs,
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def lease_holder(self, lease_namespace: str | None = None) -> str:
        from kubernetes import client as k8s

        lease = k8s.CoordinationV1Api(self.api).read_namespaced_lease(
            f"genjob-{self.ns}", lease_namespace or self.ns
        )
        return lease.spec.holder_identity

    def namespace_exists(self) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.read_namespace(self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def event_reasons(self, name: str) -> list[str]:
        events = self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}")
        return [e.reason for e in events.items]

    def queued_events(self, uid: str) -> int:
        history = read_history(self.queue.client, self.queue.keys, count=100_000)
        return sum(1 for e in history if e.type == "queued" and e.job_id == uid)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.cluster.kubectl("delete", "namespace", self.ns, "--wait=false", check=False)


@pytest.fixture
def stack(cluster, genjob_crd, redis_server, tiny_model, tmp_path):
    s = Stack(cluster, redis_server, tiny_model, tmp_path)
    yield s
    s.close()


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("genjob_operator_api_writes_total{"):
            kind = line.split('kind="')[1].split('"')[0]
            out[kind] = float(line.rsplit(" ", 1)[1])
    return out


def test_apply_queued_running_succeeded_with_stored_png(stack):
    """kubectl apply -> Queued -> Running -> Succeeded with a stored PNG whose sha256 matches,
    an Event per transition, then deletion by its TTL. API writes to the object: 4 in its
    life (finalizer, Queued, Running, Succeeded) plus its deletion (DELETE, finalizer release);
    kopf itself writes nothing (no annotations, no finalizer of its own)."""
    port = free_port()
    op = stack.operator(http_port=port)
    manifest = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GenerationJob",
        "metadata": {"name": "fox", "namespace": stack.ns},
        "spec": {
            "tier": "free",
            "prompt": "a red fox",
            "width": 64,
            "height": 64,
            "steps": 4,
            "ttlSecondsAfterFinished": 8,
        },
    }
    stack.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    stack.wait_phase("fox", "Queued")
    meta = stack.get("fox")["metadata"]
    assert meta["finalizers"] == ["genjob.io/cleanup"]
    assert not [k for k in meta.get("annotations", {}) if "kopf" in k], meta["annotations"]
    stack.worker()
    status = stack.wait_phase("fox", "Succeeded", timeout=90)
    image = status["result"]["images"][0]
    data = Path(urlparse(image["uri"]).path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and hashlib.sha256(data).hexdigest() == image["sha256"]
    assert status["model"] == "tiny" and status["attempts"] == 1 and status["usage"]["gpuSeconds"] > 0
    assert status["queuedAt"] and status["startedAt"] and status["finishedAt"] and status["worker"] == "w1"
    assert status["progressText"] == "4/4" and "kopf" not in status
    # Event timestamps have second resolution: compare the reasons as a multiset, not in order.
    expected = sorted(["Queued", "Running", "Succeeded"])
    wait_for("one Event per transition", lambda: sorted(stack.event_reasons("fox")) == expected, 30)
    writes = _metrics(port)
    assert writes.get("finalizer_add") == 1 and writes.get("status") == 3, writes
    wait_for("deletion after ttlSecondsAfterFinished", lambda: stack.get("fox") is None, 30, logs=[op])
    writes = _metrics(port)
    assert {k: writes.get(k) for k in ("finalizer_add", "status", "delete", "finalizer_remove")} == {
        "finalizer_add": 1,
        "status": 3,
        "delete": 1,
        "finalizer_remove": 1,
    }, writes
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
    assert op.process.poll() is None


def test_delete_while_queued_and_while_running(stack):
    """Deleting a queued job takes it off the queue; deleting a running one raises its cancel
    flag and the worker stops; both objects are gone promptly."""
    stack.operator()
    run_uid = stack.create("long", owner="t1", **LONG)
    stack.worker()
    stack.wait_phase("long", "Running", timeout=60)
    wait_uid = stack.create("waiting", owner="t2")
    stack.wait_phase("waiting", "Queued")
    stack.delete("waiting")
    wait_for("waiting gone", lambda: stack.get("waiting") is None, 30)
    assert stack.queue.get(wait_uid).state == JobState.CANCELLED
    stack.delete("long")
    wait_for("long gone", lambda: stack.get("long") is None, 30)
    assert stack.queue.get(run_uid).cancel_requested  # the finalizer went without waiting for the worker
    wait_for("worker stops the running job", lambda: stack.queue.get(run_uid).state == JobState.CANCELLED, 30)


def test_operator_killed_and_restarted_mid_flow(stack):
    """kill -9 of the operator while jobs run: a new one takes the Lease, admits the job
    created meanwhile, and mirrors every outcome; each job is enqueued exactly once."""
    first = stack.operator("op-a")
    uids = {f"j{i}": stack.create(f"j{i}", owner=f"t{i}") for i in range(3)}
    for name in uids:
        stack.wait_phase(name, "Queued")
    first.kill()
    stack.worker()
    uids["late"] = stack.create("late", owner="t9")
    wait_for(
        "jobs done in Redis while the operator is down",
        lambda: all(
            stack.queue.get(u) and stack.queue.get(u).state == JobState.SUCCEEDED
            for n, u in uids.items()
            if n != "late"
        ),
        90,
    )
    stack.operator("op-b")
    for name in uids:
        stack.wait_phase(name, "Succeeded", timeout=90)
    assert all(stack.queued_events(uid) == 1 for uid in uids.values())


def test_redis_losing_its_last_writes_is_recovered_by_the_operator(cluster, genjob_crd, tiny_model, tmp_path):
    """A crash of Redis's machine with AOF `everysec` loses up to the last second of writes
    (played here by cutting the AOF back to where it was before the job was queued; a kill -9
    of the process alone loses nothing, the kernel keeps what Redis wrote). The operator's
    resync sees a Queued GenerationJob without a queue record, queues it again (Event
    QueueRecordLost) and the job succeeds."""
    redis_server = RedisServer(tmp_path / "aof-redis", appendonly=True).start()
    stack = Stack(cluster, redis_server, tiny_model, tmp_path)
    stack.env["GENJOB_OPERATOR__RESYNC_SECONDS"] = "1"
    try:
        stack.operator()
        stack.create("warm", owner="t-warm")
        stack.wait_phase("warm", "Queued")
        aof = max(
            (tmp_path / "aof-redis" / "appendonlydir").glob("*.incr.aof"), key=lambda p: p.stat().st_mtime
        )
        size_before = aof.stat().st_size
        uid = stack.create("lost", owner="t-lost")  # free tier: one job per tenant
        stack.wait_phase("lost", "Queued")
        redis_server.stop(kill=True)
        with aof.open("r+b") as f:
            f.truncate(size_before)
        redis_server.start()
        assert stack.queue.get(uid) is None, "the record of the job queued last is gone"
        stack.worker()
        status = stack.wait_phase("lost", "Succeeded", timeout=120)
        assert status["result"]["images"]
        assert "QueueRecordLost" in stack.event_reasons("lost")
        stack.wait_phase("warm", "Succeeded", timeout=60)
    finally:
        stack.close()
        redis_server.stop()


def test_quota_wait_and_automatic_admission(stack):
    """free allows one active job per tenant: later jobs wait Pending/QuotaExceeded and the
    oldest is admitted as soon as the slot frees."""
    stack.operator()
    stack.create("q1")
    stack.wait_phase("q1", "Queued")
    time.sleep(1.1)  # distinct creationTimestamps (second resolution)
    stack.create("q2")
    time.sleep(1.1)
    stack.create("q3")
    for name in ("q2", "q3"):
        status = stack.wait_phase(name, "Pending")
        assert status["reason"] == "QuotaExceeded" and "1 of 1" in status["message"]
    stack.delete("q1")
    stack.wait_phase("q2", "Queued", timeout=30)
    time.sleep(2)
    assert stack.status("q3")["phase"] == "Pending"


def test_ttl_deletes_finished_jobs_without_finalizer(stack):
    """ttlSecondsAfterFinished also deletes a job that failed admission (it never got our
    finalizer); a job without the field falls back to the default (1 day): it stays."""
    stack.operator()
    stack.create("short-lived", steps=40, ttlSecondsAfterFinished=2)
    stack.create("kept", steps=40)
    stack.wait_phase("short-lived", "Failed")
    stack.wait_phase("kept", "Failed")
    wait_for("TTL deletion", lambda: stack.get("short-lived") is None, 30)
    assert stack.status("kept")["phase"] == "Failed"


def test_namespace_deleted_while_operator_down(stack):
    """The operator is down while a namespace with a queued job is deleted: the job (and so
    the namespace) waits on our finalizer; the restarted operator cancels the queued work,
    releases the finalizer, and the namespace goes away."""
    first = stack.operator("op-a", lease_namespace="default")
    uid = stack.create("orphan")
    stack.wait_phase("orphan", "Queued")
    first.kill()
    stack.cluster.kubectl("delete", "namespace", stack.ns, "--wait=false")
    wait_for(
        "the namespace controller deletes the job",
        lambda: ((stack.get("orphan") or {}).get("metadata") or {}).get("deletionTimestamp"),
        60,
    )
    assert stack.namespace_exists() and stack.queue.get(uid).state == JobState.QUEUED
    stack.operator("op-b", lease_namespace="default")
    wait_for("job released", lambda: stack.get("orphan") is None, 60, logs=stack.procs)
    assert stack.queue.get(uid).state == JobState.CANCELLED
    wait_for("namespace gone", lambda: not stack.namespace_exists(), 120)


def test_worker_sigkill_requeued_then_succeeds(stack):
    """SIGKILL of the worker mid-job: the reaper requeues it (WorkerLost, attempts 1) and
    another worker completes it (attempts 2)."""
    import signal

    stack.operator()
    stack.create("crash", maxAttempts=3, **MEDIUM)
    w1 = stack.worker("w1")
    stack.wait_phase("crash", "Running", timeout=60)
    w1.signal(signal.SIGKILL)
    status = stack.wait_phase("crash", "Queued", timeout=30)
    assert status["reason"] == "WorkerLost" and status["attempts"] == 1
    stack.worker("w2")
    status = stack.wait_phase("crash", "Succeeded", timeout=90)
    assert status["attempts"] == 2 and status["worker"] == "w2"
    assert "Requeued" in stack.event_reasons("crash")


def test_preempted_job_resumes_on_another_worker_with_the_image_of_an_uninterrupted_run(stack):
    """SIGTERM of a worker whose job cannot finish in its drain grace (a pod deletion, a Spot
    notice): it checkpoints the job and requeues it (Queued, Preempted, the attempt not
    counted); another worker resumes it from that step (status resumedFromStep and stepsSaved,
    a Resumed Event), and the image equals the one an uninterrupted job of the same spec makes."""
    import signal

    from tests.support.worker_harness import wait_for_job

    stack.operator()
    spec = {"seed": 17, "prompt": "a lighthouse in fog", **MEDIUM}
    uid = stack.create("spot", **spec)
    w1 = stack.worker("w1", drain_grace_seconds=0.2)
    wait_for_job(stack.queue, uid, {JobState.RUNNING}, timeout=90, min_progress=5)
    w1.signal(signal.SIGTERM)
    assert w1.wait(60) == 0
    requeued = stack.queue.get(uid)
    assert requeued is not None and requeued.state == JobState.QUEUED and requeued.reason == "Preempted"
    assert requeued.checkpoint and requeued.checkpoint_step is not None and requeued.checkpoint_step >= 5
    assert stack.wait_phase("spot", "Queued", timeout=30)["reason"] == "Preempted"

    stack.worker("w2")
    status = stack.wait_phase("spot", "Succeeded", timeout=180)
    assert status["worker"] == "w2" and status["attempts"] == 1
    assert status["resumedFromStep"] == requeued.checkpoint_step == status["stepsSaved"]
    wait_for("a Resumed Event", lambda: "Resumed" in stack.event_reasons("spot"), 30)
    stack.create("reference", **spec)
    reference = stack.wait_phase("reference", "Succeeded", timeout=180)
    assert reference.get("resumedFromStep", 0) == 0
    assert status["result"]["images"][0]["sha256"] == reference["result"]["images"][0]["sha256"]


def test_attempts_exhausted_fail_and_dead_letter(stack):
    """With maxAttempts 1 a lost worker fails the job (WorkerLost) into the dead-letter list."""
    import signal

    stack.operator()
    uid = stack.create("doomed", maxAttempts=1, **LONG)
    w1 = stack.worker("w1")
    stack.wait_phase("doomed", "Running", timeout=60)
    w1.signal(signal.SIGKILL)
    status = stack.wait_phase("doomed", "Failed", timeout=30)
    assert status["reason"] == "WorkerLost" and "lease" in status["message"]
    assert uid in stack.queue.dead_letters("free")


def test_invalid_specs_get_a_clear_error(stack):
    """Schema errors are refused by the API server; what the schema cannot express fails in
    status with a reason and a message naming the problem. Nothing is defaulted silently."""
    stack.operator()
    for path in sorted((REPO / "manifests" / "examples" / "invalid").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        doc["metadata"]["namespace"] = stack.ns
        result = stack.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=False)
        assert result.returncode != 0 and "spec" in result.stderr, (path.name, result.stderr)
    stack.create("too-many-steps", steps=40)
    stack.create("unknown-model", model="sdxl-turbo")
    stack.create("unknown-tier", tier="gold")
    s = stack.wait_phase("too-many-steps", "Failed")
    assert s["reason"] == "InvalidSpec" and "steps 40 exceeds the free tier maximum 30" in s["message"]
    s = stack.wait_phase("unknown-model", "Failed")
    assert s["reason"] == "ModelNotFound" and "sdxl-turbo" in s["message"]
    s = stack.wait_phase("unknown-tier", "Failed")
    assert s["reason"] == "InvalidSpec" and "gold" in s["message"]


def test_two_replicas_enqueue_each_job_once(stack):
    """Two operators share one Lease: one acts, the other stands by and takes over when the
    leader is killed; every job is enqueued exactly once."""
    replicas = {"op-a": stack.operator("op-a"), "op-b": stack.operator("op-b")}
    uids = [stack.create(f"r{i}", owner=f"t{i}") for i in range(8)]
    for i in range(8):
        stack.wait_phase(f"r{i}", "Queued")
    leader = stack.lease_holder()
    (standby,) = set(replicas) - {leader}
    replicas[leader].kill()
    uids += [stack.create(f"s{i}", owner=f"u{i}") for i in range(4)]
    for i in range(4):
        stack.wait_phase(f"s{i}", "Queued", timeout=60)
    assert stack.lease_holder() == standby and replicas[standby].process.poll() is None
    assert [stack.queued_events(u) for u in uids] == [1] * len(uids)


def test_push_trigger_activates_on_admission_follows_the_leader_and_cold_phases_reach_status(stack):
    """KEDA's side of the push trigger, with a real gRPC client (KEDA's round-robin config) over
    two real operator processes: `true` the moment a GenerationJob is admitted for an idle tier,
    `false` once the tier drained; the standby ends streams, so after the leader stops the
    retried stream is served by the new leader. The job run by a fresh worker carries its
    cold-start phases and queueSeconds in status."""
    import grpc

    from genjob_operator.externalscaler import externalscaler_pb2 as pb
    from genjob_operator.externalscaler import externalscaler_pb2_grpc as pb_grpc

    def leads(name: str) -> bool:
        try:
            return stack.lease_holder() == name
        except Exception:  # no Lease yet
            return False

    ports = {name: free_port() for name in ("op-a", "op-b")}
    replicas = {}
    for name, port in ports.items():
        stack.env["GENJOB_OPERATOR__PUSH_PORT"] = str(port)
        replicas[name] = stack.operator(name)
        if name == "op-a":
            wait_for("op-a leads", lambda: leads("op-a"), logs=stack.procs)
    channel = grpc.insecure_channel(
        "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports.values()),
        options=[("grpc.service_config", '{"loadBalancingConfig": [{"round_robin":{}}]}')],
    )
    stub = pb_grpc.ExternalScalerStub(channel)
    ref = pb.ScaledObjectRef(name="genjob-worker-free", namespace=stack.ns, scalerMetadata={"tier": "free"})

    def served_stream():
        """KEDA's loop: open the stream; when it ends without an answer, open it again."""

        def first():
            stream = stub.StreamIsActive(ref, timeout=120)
            answer = next(stream, None)
            return answer is not None and (answer, stream)

        answer, stream = wait_for("a replica serving the stream", first, timeout=30, logs=stack.procs)
        return answer.result, stream

    state, stream = served_stream()
    assert state is False  # idle tier
    stack.create("p1")
    assert next(stream).result is True  # pushed by the admission loop, no worker yet
    worker = stack.worker("w1")
    status = stack.wait_phase("p1", "Succeeded")
    cold = status["coldStart"]
    assert cold["modelLoadSeconds"] > 0 and cold["workerStartedAt"] < cold["workerReadyAt"]
    assert status["queueSeconds"] > 0  # it waited for the worker to start
    assert next(stream).result is False  # the reaper saw the tier drained

    worker.stop()  # p2 below stays queued: the tier stays active
    replicas["op-a"].stop()  # clean shutdown: streams end, the Lease is released
    assert list(stream) == []
    wait_for("op-b leads", lambda: leads("op-b"), logs=stack.procs)
    stack.create("p2", steps=2)
    state, stream = served_stream()
    if state is False:  # the stream opened before p2's admission
        state = next(stream).result
    assert state is True
    stream.cancel()
