"""The gateway in cluster mode against the real control plane: it creates GenerationJob objects
in the tenant's namespace and answers from their status. No operator runs here: the test
writes status and queue entries as the operator would (the operator has its own tests)."""

from __future__ import annotations

import hashlib
import http.server
import json
import queue
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from genjob.crd import GROUP, PLURAL, VERSION
from genjob.keys import RedisKeys
from genjob.localredis import RedisServer, free_port
from genjob.queue import JobQueue, NewJob
from genjob.settings import GenjobSettings
from tests.support.processes import GenjobProcess

from .conftest import wait_for

pytestmark = pytest.mark.cluster

WEBHOOK_SECRET = "whsec-cluster-0123456789abcdef"
OTHER_WEBHOOK_SECRET = "whsec-other-tenant-0123456789"

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8ffff3f0005fe02fe"
    "a7d6a4c10000000049454e44ae426082"
)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def cluster_gateway(
    cluster: Any, genjob_crd: Path, redis_server: RedisServer, tmp_path_factory: Any
) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("cluster-gateway")
    tenant = f"t{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", f"genjob-{tenant}")
    keys = {"own": f"gj_{tenant}_own", "other": f"gj_{tenant}_other"}
    entries = [
        {
            "key_sha256": _hash(keys["own"]),
            "tenant": tenant,
            "tier": "pro",
            "id": "own",
            "webhook_secret": WEBHOOK_SECRET,
        },
        {
            "key_sha256": _hash(keys["other"]),
            "tenant": f"o{tenant}",
            "tier": "pro",
            "id": "other",
            "webhook_secret": OTHER_WEBHOOK_SECRET,
        },
    ]
    (root / "keys.json").write_text(json.dumps(entries))
    port = free_port()
    env = dict(
        cluster.env(),
        KUBECONFIG=str(cluster.kubeconfig),
        GENJOB_API__MODE="cluster",
        GENJOB_API__API_KEYS_FILE=str(root / "keys.json"),
        GENJOB_API__WEBHOOK_ALLOW_PRIVATE="true",  # the test receiver listens on loopback
        GENJOB_REDIS__URL=redis_server.url,
        GENJOB_REDIS__KEY_PREFIX=f"cl{tenant}",
        GENJOB_RESULTS__PATH=str(root / "results"),
    )
    env.pop("GENJOB_CONFIG_FILE", None)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    api = GenjobProcess(["api", "--host", "127.0.0.1", "--port", str(port)], env, root / "api.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        api.wait_http(f"{url}/readyz", timeout=60)
        yield {"url": url, "keys": keys, "tenant": tenant, "root": root, "prefix": f"cl{tenant}"}
    finally:
        api.stop(grace=20)
        cluster.kubectl("delete", "namespace", f"genjob-{tenant}", "--wait=false", check=False)


def _client(gw: dict[str, Any], who: str = "own") -> httpx.Client:
    return httpx.Client(
        base_url=gw["url"], headers={"Authorization": f"Bearer {gw['keys'][who]}"}, timeout=30
    )


def test_cluster_mode_creates_jobs_and_reads_their_status(
    cluster: Any, cluster_gateway: dict[str, Any]
) -> None:
    """POST creates a GenerationJob in genjob-<tenant> (tier and owner from the key); its status,
    written by the operator, is what GET, the list and the image endpoint answer from."""
    from kubernetes import client as k8s

    gw, ns = cluster_gateway, f"genjob-{cluster_gateway['tenant']}"
    api = k8s.CustomObjectsApi(cluster.api_client())
    with _client(gw) as c:
        r = c.post("/v1/generations", json={"prompt": "a red fox", "width": 64, "height": 64, "steps": 2})
        assert r.status_code == 202, r.text
        # Counted against the key's limit by the cluster backend (default 120 per minute).
        assert r.headers["X-RateLimit-Limit"] == "120" and int(r.headers["X-RateLimit-Remaining"]) < 120
        job = r.json()
        assert job["status"] == "pending" and job["tier"] == "pro"
        obj = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, job["id"])
        assert obj["spec"]["owner"] == gw["tenant"] and obj["spec"]["tier"] == "pro"
        assert (
            obj["spec"]["model"] == "tiny" and obj["metadata"]["labels"]["genjob.io/tenant"] == gw["tenant"]
        )

        image = gw["root"] / "results" / "ab" / "img.png"
        image.parent.mkdir(parents=True)
        image.write_bytes(PNG)
        status = {
            "phase": "Succeeded",
            "reason": "Completed",
            "attempts": 1,
            "progress": {"step": 2, "total": 2},
            "result": {
                "images": [
                    {
                        "uri": image.resolve().as_uri(),
                        "sha256": hashlib.sha256(PNG).hexdigest(),
                        "sizeBytes": len(PNG),
                        "width": 1,
                        "height": 1,
                    }
                ],
                "seed": 42,
                "model": "tiny",
            },
        }
        api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, job["id"], {"status": status})
        done = c.get(f"/v1/generations/{job['id']}").json()
        assert done["status"] == "succeeded" and done["seed"] == 42 and done["progress"]["step"] == 2
        assert c.get(done["images"][0]["url"]).content == PNG
        listed = c.get("/v1/generations", params={"status": "succeeded"}).json()["items"]
        assert [g["id"] for g in listed] == [job["id"]]
    with _client(gw, "other") as other:
        assert other.get(f"/v1/generations/{job['id']}").status_code == 404


def test_cluster_mode_cancel_idempotency_and_refusals(cluster: Any, cluster_gateway: dict[str, Any]) -> None:
    """DELETE deletes the object; an Idempotency-Key replay returns the same object; bad input
    never reaches the API server."""
    from kubernetes import client as k8s

    gw, ns = cluster_gateway, f"genjob-{cluster_gateway['tenant']}"
    api = k8s.CustomObjectsApi(cluster.api_client())
    body = {"prompt": "cancel me", "width": 64, "height": 64, "steps": 2}
    with _client(gw) as c:
        a = c.post("/v1/generations", json=body, headers={"Idempotency-Key": "k1"}).json()
        b = c.post("/v1/generations", json=body, headers={"Idempotency-Key": "k1"})
        assert b.json()["id"] == a["id"] and b.headers["Idempotent-Replayed"] == "true"
        r = c.delete(f"/v1/generations/{a['id']}")
        assert r.status_code == 200 and r.json()["outcome"] == "cancel_requested"
        gone = api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
        assert a["id"] not in [o["metadata"]["name"] for o in gone]
        before = len(gone)
        bad = c.post("/v1/generations", json={"prompt": "x", "steps": 100})  # pro allows 75
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "tier_limit_exceeded"
        assert len(api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]) == before
        assert c.get("/readyz").json() == {"status": "ready", "mode": "cluster"}
    with _client(gw, "other") as other:  # its tenant has no namespace
        r = other.post("/v1/generations", json=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "tenant_not_provisioned", r.text


class _Receiver(http.server.BaseHTTPRequestHandler):
    calls: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.calls.put((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    """The URL of a local webhook receiver (what it receives goes to _Receiver.calls)."""
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.shutdown()


def _queue(gw: dict[str, Any], redis_server: RedisServer) -> JobQueue:
    """The gateway's queue, as the operator and workers see it."""
    settings = GenjobSettings()
    return JobQueue(redis_server.client(), RedisKeys(gw["prefix"]), list(settings.tiers), settings.queue)


def test_cluster_mode_queue_position_and_signed_webhook(
    cluster: Any, cluster_gateway: dict[str, Any], redis_server: RedisServer, receiver: str
) -> None:
    """A job's queue position comes from its tier's Redis list (the operator queues it by uid), and
    its webhook, recorded at submit, is delivered signed once the final state reached the object."""
    from kubernetes import client as k8s

    gw, ns = cluster_gateway, f"genjob-{cluster_gateway['tenant']}"
    api = k8s.CustomObjectsApi(cluster.api_client())
    jobs = _queue(gw, redis_server)
    with _client(gw) as c:
        body = {"prompt": "hook", "width": 64, "height": 64, "steps": 2}
        hook = {"webhook": {"url": receiver}}
        job = c.post("/v1/generations", json={**body, **hook}).json()
        assert job["status"] == "pending" and job["queuePosition"] == 0 and job["estimatedWaitSeconds"] > 0
        obj = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, job["id"])
        assert obj["metadata"]["annotations"]["genjob.io/webhook-url"] == hook["webhook"]["url"]
        # Play the operator: another job ahead in the queue, then this one, by uid, marked Queued.
        jobs.enqueue(NewJob(id=f"ahead-{uuid.uuid4().hex}", tier="pro", spec={}))
        uid = obj["metadata"]["uid"]
        meta = {"namespace": ns, "name": job["id"], "uid": uid, "tenant": gw["tenant"], "model": "tiny"}
        jobs.enqueue(NewJob(id=uid, tier="pro", spec=obj["spec"], meta=meta))
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, job["id"], {"status": {"phase": "Queued"}}
        )
        queued = c.get(f"/v1/generations/{job['id']}").json()
        assert queued["status"] == "queued" and queued["queuePosition"] == 1
        # The worker finishes it: the final event comes before the operator mirrors it.
        claimed = jobs.claim(["pro"], "test-worker", max_jobs=2)
        [mine] = [j for j in claimed if j.id == uid]
        jobs.complete(mine, {"images": [], "seed": 5})
        assert _Receiver.calls.empty()
        api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            ns,
            PLURAL,
            job["id"],
            {
                "status": {
                    "phase": "Succeeded",
                    "reason": "Completed",
                    "result": {"images": [], "seed": 5, "model": "tiny"},
                }
            },
        )
        headers, payload = _Receiver.calls.get(timeout=60)
    Webhook(WEBHOOK_SECRET.encode()).verify(payload, headers)  # raises unless signed and recent
    delivered = json.loads(payload)
    assert headers["webhook-id"].startswith(job["id"] + ":") and job["id"] == delivered["id"]
    assert delivered["status"] == "succeeded"
    assert delivered["seed"] == 5


def test_a_job_labelled_with_another_tenants_key_gets_no_webhook_signed_with_its_secret(
    cluster: Any, cluster_gateway: dict[str, Any], redis_server: RedisServer, receiver: str
) -> None:
    """Attack: a user with RBAC in its tenant's namespace creates a GenerationJob itself, labelled
    with another tenant's API key id and a webhook annotation pointing at its own receiver, to
    collect payloads signed with that tenant's secret (and forge webhooks to that tenant). The
    webhook of a cluster-mode job is what the gateway recorded when the key created it: the forged
    job gets none; the gateway's own job still gets its signed webhook."""
    from kubernetes import client as k8s

    gw, ns = cluster_gateway, f"genjob-{cluster_gateway['tenant']}"
    api = k8s.CustomObjectsApi(cluster.api_client())
    jobs = _queue(gw, redis_server)
    url = receiver
    done = {"phase": "Succeeded", "reason": "Completed", "result": {"images": [], "seed": 5, "model": "tiny"}}

    def run_as_operator(name: str) -> None:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        uid = obj["metadata"]["uid"]
        meta = {"namespace": ns, "name": name, "uid": uid, "tenant": gw["tenant"], "model": "tiny"}
        jobs.enqueue(NewJob(id=uid, tier="pro", spec=obj["spec"], meta=meta))
        [mine] = [j for j in jobs.claim(["pro"], "test-worker", max_jobs=5) if j.id == uid]
        api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, name, {"status": done})
        jobs.complete(mine, {"images": [], "seed": 5})

    forged = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GenerationJob",
        "metadata": {
            "name": f"forged-{uuid.uuid4().hex[:8]}",
            "labels": {"genjob.io/tenant": gw["tenant"], "genjob.io/api-key": "other"},
            "annotations": {"genjob.io/webhook-url": url},
        },
        "spec": {"tier": "pro", "prompt": "forged", "width": 64, "height": 64, "steps": 2},
    }
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, forged)
    run_as_operator(forged["metadata"]["name"])
    with _client(gw) as c:
        body = {"prompt": "own", "width": 64, "height": 64, "steps": 2, "webhook": {"url": url}}
        own = c.post("/v1/generations", json=body).json()
    run_as_operator(own["id"])
    headers, payload = _Receiver.calls.get(timeout=60)
    assert json.loads(payload)["id"] == own["id"]
    Webhook(WEBHOOK_SECRET.encode()).verify(payload, headers)

    def settled() -> bool:  # both final events read and acknowledged by the dispatcher
        groups = redis_server.client().xinfo_groups(jobs.keys.final_events)
        return bool(groups) and groups[0]["pending"] == 0 and groups[0]["entries-read"] >= 2

    wait_for("the dispatcher to acknowledge both final events", settled, 60, 0.2)
    assert _Receiver.calls.empty(), "the forged job got a webhook"


def _generationjob_gets(cluster: Any) -> float:
    """GET requests on generationjobs the API server has served (its own counter)."""
    total = 0.0
    for line in cluster.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        if (
            line.startswith("apiserver_request_total{")
            and 'resource="generationjobs"' in line
            and 'verb="GET"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_cluster_mode_event_stream_follows_the_queue_not_the_api_server(
    cluster: Any, cluster_gateway: dict[str, Any], redis_server: RedisServer
) -> None:
    """An event stream reads the GenerationJob once (who may see it, its uid), then follows the
    job's queue record in Redis: progress and the final state arrive without a Kubernetes GET at
    each poll (an attacker's streams, at the per-key cap, would otherwise load the API server)."""
    from httpx_sse import connect_sse
    from kubernetes import client as k8s

    gw, ns = cluster_gateway, f"genjob-{cluster_gateway['tenant']}"
    api = k8s.CustomObjectsApi(cluster.api_client())
    jobs = _queue(gw, redis_server)
    with _client(gw) as c:
        job = c.post(
            "/v1/generations", json={"prompt": "stream", "width": 64, "height": 64, "steps": 4}
        ).json()
    obj = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, job["id"])
    uid = obj["metadata"]["uid"]
    meta = {"namespace": ns, "name": job["id"], "uid": uid, "tenant": gw["tenant"], "model": "tiny"}
    jobs.enqueue(NewJob(id=uid, tier="pro", spec=obj["spec"], meta=meta))
    [claimed] = [j for j in jobs.claim(["pro"], "test-worker", max_jobs=5) if j.id == uid]
    seen: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    def listen() -> None:
        with _client(gw) as c, connect_sse(c, "GET", f"/v1/generations/{job['id']}/events") as source:
            for sse in source.iter_sse():
                seen.put((sse.event, sse.json()))

    before = _generationjob_gets(cluster)
    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    first, state = seen.get(timeout=30)
    assert first == "status" and state["status"] == "running", state
    for step in range(1, 5):
        jobs.report_progress(claimed, "test-worker", step, 4)
        event, progress = seen.get(timeout=30)
        assert event == "progress" and progress == {"step": step, "total": 4}
    jobs.complete(claimed, {"images": [], "seed": 5, "model": "tiny"})
    event, final = seen.get(timeout=30)
    assert event == "succeeded" and final["id"] == job["id"] and final["seed"] == 5
    listener.join(timeout=30)
    # The route's ownership check and the stream's first read; not one GET per poll.
    assert _generationjob_gets(cluster) - before <= 2
