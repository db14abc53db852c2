"""End to end over real HTTP: gateway (uvicorn subprocess) -> Redis -> real worker -> result store."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from standardwebhooks import Webhook, WebhookVerificationError

from genjob.localredis import free_port

Gateway = Any  # tests/api/conftest.py: Gateway
Submit = Callable[..., httpx.Response]
SMALL = {"width": 64, "height": 64, "steps": 2}
WEBHOOK_SECRET = "whsec-test-0123456789abcdef"  # the alice key's secret in conftest.py
MAX_STREAMS_PER_KEY = 2  # the gateway's api.max_streams_per_key in conftest.py


def verified(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check, with the Standard Webhooks library (a secret without the whsec_
    prefix signs with its UTF-8 bytes)."""
    try:
        Webhook(secret.encode()).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


def test_create_poll_and_download_the_image(worker_ready: Gateway, submit: Submit) -> None:
    """A submitted job is accepted with a queue position, runs, and its PNG downloads intact."""
    r = submit("alice", {"prompt": "a red fox", "seed": 7, **SMALL})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["tier"] == "pro" and job["model"] == "tiny"
    assert job["queuePosition"] is not None and job["estimatedWaitSeconds"] >= 0
    assert r.headers["Location"] == f"/v1/generations/{job['id']}"
    done = worker_ready.wait_for("alice", job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    assert done["seed"] == 7 and done["progress"] == {"step": 2, "total": 2}
    assert done["startedAt"] and done["finishedAt"]
    [image] = done["images"]
    png = worker_ready.client("alice").get(image["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert hashlib.sha256(png.content).hexdigest() == image["sha256"]
    assert (image["width"], image["height"]) == (64, 64)
    # Another tenant cannot see the job or its image.
    assert worker_ready.client("bob").get(f"/v1/generations/{job['id']}").status_code == 404
    assert worker_ready.client("bob").get(image["url"]).status_code == 404
    assert worker_ready.client("alice").get(f"/v1/generations/{job['id']}/images/1").status_code == 404


def test_event_streams_are_capped_per_key(gateway: Gateway, submit: Submit) -> None:
    """One key cannot hold open more than api.max_streams_per_key streams (each costs the
    gateway a poll loop); a closed stream frees its slot, and other keys are not affected."""
    job = submit("ent", {"prompt": "watched", **SMALL}).json()
    url = f"/v1/generations/{job['id']}/events"
    with contextlib.ExitStack() as open_streams:
        for _ in range(MAX_STREAMS_PER_KEY):
            r = open_streams.enter_context(gateway.client("ent").stream("GET", url))
            assert r.status_code == 200
        refused = gateway.client("ent").get(url)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_streams"
    deadline = time.monotonic() + 10  # the server sees the disconnects at its next poll
    while _stream_status(gateway, "ent", url) == 429 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _stream_status(gateway, "ent", url) == 200


def _stream_status(gateway: Gateway, who: str, url: str) -> int:
    with gateway.client(who).stream("GET", url) as response:
        return response.status_code


def test_sse_stream_sends_status_progress_then_the_final_state_in_order(
    worker_ready: Gateway, submit: Submit
) -> None:
    """The event stream starts with the current status, reports non-decreasing progress and ends
    with exactly one final event, after which the server closes it."""
    job = submit("alice", {"prompt": "stream me", "width": 64, "height": 64, "steps": 8}).json()
    events: list[tuple[str, dict[str, Any]]] = []
    with connect_sse(worker_ready.client("alice"), "GET", f"/v1/generations/{job['id']}/events") as source:
        r = source.response
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [(sse.event, sse.json()) for sse in source.iter_sse() if sse.data]  # not keep-alive pings
    names = [e for e, _ in events]
    assert names[0] == "status"
    assert names[-1] == "succeeded" and names.count("succeeded") == 1
    assert set(names) <= {"status", "progress", "succeeded"}
    steps = [d["step"] for e, d in events if e == "progress"]
    steps += [events[-1][1]["progress"]["step"]]
    assert steps == sorted(steps) and steps[-1] == 8
    statuses = [d["status"] for e, d in events if e in ("status", "succeeded")]
    order = ["queued", "running", "succeeded"]
    assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses)
    assert events[-1][1]["images"]


def test_cancel_a_queued_job(gateway: Gateway, submit: Submit) -> None:
    """Cancelling a waiting job takes it out of the queue at once; a second cancel is a no-op."""
    job = submit("ent", {"prompt": "never runs", **SMALL}).json()
    c = gateway.client("ent")
    r = c.delete(f"/v1/generations/{job['id']}")
    assert r.status_code == 200 and r.json()["outcome"] == "cancelled"
    assert r.json()["generation"]["status"] == "cancelled"
    assert c.get(f"/v1/generations/{job['id']}").json()["reason"] == "Cancelled"
    assert c.delete(f"/v1/generations/{job['id']}").json()["outcome"] == "already_final"
    assert job["id"] not in gateway.redis.lrange("apitest:pending:enterprise", 0, -1)
    assert gateway.client("bob").delete(f"/v1/generations/{job['id']}").status_code == 404


def test_cancel_a_running_job_stops_it(worker_ready: Gateway, submit: Submit) -> None:
    """A running job gets a cancel request that its worker honours at the next step."""
    job = submit("alice", {"prompt": "long", "width": 256, "height": 256, "steps": 75}).json()
    worker_ready.wait_for("alice", job["id"], {"running"})
    r = worker_ready.client("alice").delete(f"/v1/generations/{job['id']}")
    assert r.status_code == 200 and r.json()["outcome"] == "cancel_requested"
    done = worker_ready.wait_for("alice", job["id"], {"cancelled", "succeeded", "failed"}, timeout=60)
    assert done["status"] == "cancelled"
    # The cancel may land before the first step is reported (progress still null).
    assert (done["progress"] or {}).get("step", 0) < 75


def test_list_is_per_tenant_paginated_and_filtered(gateway: Gateway, submit: Submit) -> None:
    """Listing shows only the caller's jobs, newest first, page by page, and filters by status."""
    ids = [submit("ent", {"prompt": f"list {i}", **SMALL}).json()["id"] for i in range(5)]
    c = gateway.client("ent")
    c.delete(f"/v1/generations/{ids[1]}")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = c.get("/v1/generations", params=params).json()
        seen += [g["id"] for g in page["items"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert seen[:5] == ids[::-1]
    assert len(seen) == len(set(seen))
    cancelled = c.get("/v1/generations", params={"status": "cancelled", "limit": 100}).json()["items"]
    assert ids[1] in [g["id"] for g in cancelled] and all(g["status"] == "cancelled" for g in cancelled)
    queued = c.get("/v1/generations", params={"status": "queued", "limit": 100}).json()["items"]
    assert set(ids) - {ids[1]} <= {g["id"] for g in queued}
    assert not set(ids) & {g["id"] for g in gateway.client("bob").get("/v1/generations").json()["items"]}


def test_queue_positions_and_queues_endpoint(gateway: Gateway, submit: Submit) -> None:
    """Waiting jobs get increasing positions; /v1/queues counts them per tier."""
    first = submit("ent", {"prompt": "q1", **SMALL}).json()
    second = submit("ent", {"prompt": "q2", **SMALL}).json()
    assert second["queuePosition"] == first["queuePosition"] + 1
    assert second["estimatedWaitSeconds"] >= first["estimatedWaitSeconds"]
    data = gateway.client("ent").get("/v1/queues").json()
    tiers = {t["tier"]: t for t in data["tiers"]}
    assert list(tiers) == ["enterprise", "studio", "pro", "starter", "free"]
    assert tiers["enterprise"]["pending"] >= 2 and tiers["enterprise"]["estimatedWaitSeconds"] > 0
    assert data["workers"] >= 1
    assert tiers["enterprise"]["workers"] == 0 and tiers["pro"]["workers"] >= 1  # the worker serves pro..free


def test_idempotency_key_same_body_same_job_other_body_conflict(gateway: Gateway, submit: Submit) -> None:
    """Same key and body: the same job (marked as replayed); same key, another body: 409."""
    body = {"prompt": "idem", **SMALL}
    a = submit("ent", body, headers={"Idempotency-Key": "order-42"})
    b = submit("ent", dict(reversed(list(body.items()))), headers={"Idempotency-Key": "order-42"})
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] == b.json()["id"] and b.headers["Idempotent-Replayed"] == "true"
    c = submit("ent", {**body, "prompt": "other"}, headers={"Idempotency-Key": "order-42"})
    assert c.status_code == 409 and c.json()["error"]["code"] == "idempotency_conflict"
    # Keys are per API key: another caller may use the same string.
    d = submit("admin", body, headers={"Idempotency-Key": "order-42"})
    assert d.status_code == 202 and d.json()["id"] != a.json()["id"]
    # A refused request releases its key, so the fixed request can reuse it.
    bad = submit("ent", {"prompt": "x", "steps": 9999}, headers={"Idempotency-Key": "order-43"})
    assert bad.status_code == 422
    good = submit("ent", {"prompt": "x", **SMALL}, headers={"Idempotency-Key": "order-43"})
    assert good.status_code == 202


class _Receiver(http.server.BaseHTTPRequestHandler):
    calls: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
    fail_first = 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Receiver.fail_first > 0:  # prove the retry: the first delivery gets a 503
            _Receiver.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        ok = verified(WEBHOOK_SECRET, dict(self.headers), body)
        _Receiver.calls.put((dict(self.headers), body))
        self.send_response(204 if ok else 401)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}/hook"
    server.shutdown()


def test_webhook_is_signed_retried_and_delivered_on_completion(
    worker_ready: Gateway, submit: Submit, receiver: str
) -> None:
    """The final state is POSTed to the job's webhook with a valid HMAC signature, after a retry."""
    job = submit("alice", {"prompt": "hook", **SMALL, "webhook": {"url": receiver}}).json()
    headers, body = _Receiver.calls.get(timeout=60)
    assert verified(WEBHOOK_SECRET, headers, body)
    assert not verified("wrong-secret-0123456789", headers, body)
    payload = json.loads(body)
    assert headers["webhook-id"].startswith(job["id"] + ":") and job["id"] == payload["id"]
    assert payload["status"] == "succeeded" and payload["images"]
    # Keys without a webhook secret cannot ask for webhooks.
    r = submit("bob", {"prompt": "hook", **SMALL, "webhook": {"url": receiver}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "webhook_not_configured"
    time.sleep(0.2)
    assert _Receiver.calls.empty()
