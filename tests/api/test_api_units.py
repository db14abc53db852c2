"""Unit tests of the gateway's pure parts: keys, webhook destinations, SSE parsing, errors, fingerprints."""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import socket
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from genjob.timestamps import iso_ms
from genjob_api.auth import ApiKeyStore, KeysFileError, hash_key, new_key, parse_keys
from genjob_api.backends import WaitEstimator
from genjob_api.errors import validation_message
from genjob_api.idempotency import fingerprint
from genjob_api.models import GenerationRequest
from genjob_api.sse import StreamSlots
from genjob_api.webhook_delivery import DeliveryPolicy, WebhookSender, WebhookTarget


def test_keys_file_holds_hashes_and_maps_them_to_callers(tmp_path) -> None:
    key = new_key()
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys:\n- key_sha256: {hash_key(key)}\n  tenant: acme\n  tier: pro\n  admin: true\n")
    store = ApiKeyStore(path)
    caller = store.lookup(key)
    assert caller is not None and (caller.tenant, caller.tier, caller.admin) == ("acme", "pro", True)
    assert caller.key_id == hash_key(key)[:12] and store.by_id(caller.key_id) == caller
    assert store.lookup(key + "x") is None and key not in path.read_text()


def test_keys_file_is_reloaded_when_it_changes(tmp_path) -> None:
    a, b = new_key(), new_key()
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([{"key_sha256": hash_key(a), "tenant": "t", "tier": "free"}]))
    store = ApiKeyStore(path, reload_seconds=0)
    assert store.lookup(a) and not store.lookup(b)
    time.sleep(0.01)
    path.write_text(json.dumps([{"key_sha256": hash_key(b), "tenant": "t", "tier": "free"}]))
    import os

    os.utime(path, (time.time() + 5, time.time() + 5))
    assert store.lookup(b) and not store.lookup(a)


@pytest.mark.parametrize(
    "text",
    [
        "- {key_sha256: abc, tenant: t, tier: free}",
        "- {key_sha256: " + "a" * 64 + ", tenant: T!, tier: free}",
        "- {key_sha256: " + "a" * 64 + ", tenant: t, tier: free, color: red}",
        "just a string",
        "[1, 2",
    ],
)
def test_malformed_keys_files_are_refused(text: str) -> None:
    with pytest.raises(KeysFileError):
        parse_keys(text, "keys.yaml")


def test_stream_slots_count_per_key_and_come_back() -> None:
    slots = StreamSlots(per_key=2)
    assert slots.take("k1") and slots.take("k1") and not slots.take("k1")
    assert slots.take("k2")  # another key has its own slots
    with slots.held("k1"):
        pass
    assert slots.take("k1") and not slots.take("k1")
    assert slots.open == {"k1": 2, "k2": 1}


def test_request_model_takes_the_job_spec_limits_but_not_tier_or_owner() -> None:
    props = GenerationRequest.model_json_schema(by_alias=True)["properties"]
    assert "tier" not in props and "owner" not in props and "webhook" in props
    assert props["prompt"]["maxLength"] == 2000 and props["steps"]["maximum"] == 500


def test_validation_messages_name_fields_and_pick_codes() -> None:
    code, message = validation_message(
        [{"loc": ("body", "prompt"), "type": "string_too_long", "msg": "too long"}]
    )
    assert code == "prompt_too_long" and message == "prompt: too long"
    assert (
        validation_message([{"loc": ("body", 5), "type": "json_invalid", "msg": "bad"}])[0] == "invalid_json"
    )


def test_fingerprint_ignores_key_order() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


@pytest.mark.parametrize("ms", [1, 999, 1_000, 1_763_877_437_042, 4_102_444_799_999])
def test_timestamps_are_rfc3339_utc_with_milliseconds(ms: int) -> None:
    from datetime import UTC, datetime

    expected = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    assert iso_ms(ms) == expected.replace("+00:00", "Z")


def test_no_timestamp_is_none() -> None:
    assert iso_ms(None) is None and iso_ms(0) is None


def test_wait_estimate_learns_from_finished_jobs() -> None:
    est = WaitEstimator(alpha=0.5)
    assert est.estimate(0, 1) == 10.0 and est.estimate(3, 2) == 20.0
    est.observe("j1", 2.0)
    est.observe("j1", 100.0)  # the same job again: ignored
    assert est.mean_seconds == 6.0


def _app_without_redis(tmp_path, **key_fields):
    """The gateway with one key ("k1", tier pro, plus `key_fields`) and a Redis URL nothing
    listens on."""
    from genjob.localredis import free_port
    from genjob.settings import GenjobSettings
    from genjob_api.main import create_app

    keys = tmp_path / "keys.json"
    entry = {"key_sha256": hash_key("k1"), "tenant": "t", "tier": "pro", **key_fields}
    keys.write_text(json.dumps([entry]))
    settings = GenjobSettings(
        redis={"url": f"redis://127.0.0.1:{free_port()}/0", "socket_timeout_seconds": 2},
        api={"api_keys_file": str(keys)},
    )
    return create_app(settings, background=False)


def test_an_unreachable_redis_answers_503_with_retry_after(tmp_path) -> None:
    """Submit (the one-command path) and a read both say the queue is unreachable and when
    to retry, instead of a bare 500."""
    from fastapi.testclient import TestClient

    with TestClient(_app_without_redis(tmp_path)) as client:
        headers = {"Authorization": "Bearer k1"}
        answers = [
            client.post("/v1/generations", json={"prompt": "a fox"}, headers=headers),
            client.get("/v1/generations/gen-1", headers=headers),
        ]
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "queue_unavailable"
        assert answer.headers["Retry-After"] == "5"


def test_an_unexpected_error_on_submit_is_a_json_500(tmp_path, monkeypatch) -> None:
    """Submit keeps the app's last-resort handler: a JSON 500 that says the details
    are in the gateway's log, and the request counted under its route."""
    from fastapi.testclient import TestClient

    from genjob_api.routes import generations

    def broken(*_args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(generations, "build_spec", broken)
    with TestClient(_app_without_redis(tmp_path), raise_server_exceptions=False) as client:
        answer = client.post(
            "/v1/generations", json={"prompt": "a fox"}, headers={"Authorization": "Bearer k1"}
        )
        metrics = client.get("/metrics").text
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal_error", answer.text
    counted = [
        sample.labels
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "genjob_api_requests_total"
    ]
    assert {"route": "/v1/generations", "method": "POST", "status": "500"} in counted


class _Delivery:
    """One webhook delivery (no Redis), its secret and payload fixed, over `transport` or real HTTP."""

    def __init__(self, allow_private: bool, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.policy = DeliveryPolicy(max_attempts=1, allow_private=allow_private)
        self.transport = transport

    def deliver(self, target: WebhookTarget) -> bool:
        async def run() -> bool:
            async with httpx.AsyncClient(transport=self.transport) as http:
                sender = WebhookSender(http, self.policy, time.time)

                async def body() -> bytes:
                    return json.dumps({"id": target.job_id, "status": "succeeded"}).encode()

                return await sender.deliver(target, f"{target.job_id}:1-0", "s" * 32, body)

        return asyncio.run(run())


def _dispatcher(allow_private: bool, transport: httpx.AsyncBaseTransport | None = None) -> _Delivery:
    return _Delivery(allow_private, transport)


def _resolving_to(monkeypatch: pytest.MonkeyPatch, *answers: str) -> list[str]:
    """Make DNS answer each lookup with the next address; returns the names looked up."""
    looked_up: list[str] = []

    def resolve(name: str, *_args: object, **_kwargs: object) -> list[tuple[object, ...]]:
        looked_up.append(name)
        address = answers[min(len(looked_up), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return looked_up


def test_webhook_delivery_resolves_the_host_and_refuses_internal_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A public-looking name that resolves to an internal address is not called; with
    api.webhook_allow_private it is."""
    _resolving_to(monkeypatch, "10.0.0.5")
    posted: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: posted.append(r) or httpx.Response(204))
    target = WebhookTarget("gen-1", "http://hooks.internal.example/hook", "k", "t")
    outcomes = [_dispatcher(allow, transport).deliver(target) for allow in (False, True)]
    assert outcomes == [False, True]
    assert [(str(r.url), r.headers["host"]) for r in posted] == [
        ("http://10.0.0.5/hook", "hooks.internal.example")
    ]


def test_webhook_delivery_connects_to_the_address_it_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name resolves to a public address for the check and to an internal
    one afterwards. The POST goes to the checked address (one lookup per attempt), naming the
    host in Host and as the TLS server name."""
    looked_up = _resolving_to(monkeypatch, "93.184.216.34", "127.0.0.1")
    posted: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: posted.append(r) or httpx.Response(200))
    target = WebhookTarget("gen-1", "https://hooks.example.com:8443/hook?x=1", "k", "t")
    assert _dispatcher(False, transport).deliver(target)
    assert looked_up == ["hooks.example.com"]
    (request,) = posted
    assert str(request.url) == "https://93.184.216.34:8443/hook?x=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    # The next attempt looks up again, sees the internal address, and refuses.
    assert not _dispatcher(False, transport).deliver(target)
    assert len(posted) == 1


def test_a_pinned_webhook_reaches_a_real_receiver_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over real HTTP: the receiver sees the name the URL gave, and a name with several
    addresses is tried address by address until one answers (127.0.0.2 refuses: the
    receiver listens on 127.0.0.1 only)."""
    real_getaddrinfo = socket.getaddrinfo

    def resolve(name: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        if name != "receiver.test":
            return real_getaddrinfo(name, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in ("127.0.0.2", "127.0.0.1")]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    seen: list[str] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        target = WebhookTarget("gen-1", f"http://receiver.test:{port}/hook", "k", "t")
        assert not _dispatcher(False).deliver(target)  # loopback addresses are refused by default
        assert _dispatcher(True).deliver(target)
    finally:
        server.shutdown()
    assert seen == [f"receiver.test:{port}"]


def test_a_webhook_to_an_internal_address_is_refused_at_submit(tmp_path) -> None:
    from fastapi.testclient import TestClient

    with TestClient(_app_without_redis(tmp_path, webhook_secret="s" * 32)) as client:
        answer = client.post(
            "/v1/generations",
            json={"prompt": "a fox", "webhook": {"url": "http://169.254.169.254/latest/meta-data"}},
            headers={"Authorization": "Bearer k1"},
        )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "webhook_url_not_allowed" and "api.webhook_allow_private" in error["message"]


def test_readiness_reasons_carry_no_exception_text() -> None:
    """/readyz is unauthenticated: a failing backend says what is down, never the error's text
    (a Kubernetes API error carries its response headers and body)."""
    from genjob_api.backends.cluster import ClusterBackend

    class FailingDiscovery:
        def get_api_versions(self, **_kwargs: object) -> None:
            raise RuntimeError("HTTP 401: {'Authorization': 'Bearer sa-token-secret', 'host': '10.0.0.1'}")

    backend = ClusterBackend.__new__(ClusterBackend)
    backend.discovery = FailingDiscovery()
    reason = backend.not_ready_reason()
    assert reason is not None and reason.startswith("kubernetes API unreachable")
    assert "secret" not in reason and "10.0.0.1" not in reason


def test_job_ids_sort_newest_first_so_cluster_pages_keep_the_order() -> None:
    """The Kubernetes API lists a namespace's objects by name and cluster mode pages through
    that list: ids of later jobs sort before earlier ones, whatever their random part."""
    from genjob.queue.records import check_job_id
    from genjob_api.routes.generations import new_job_id

    ids = [new_job_id(now_ms=ms) for ms in (1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000)]
    assert sorted(ids) == ids[::-1]
    for job_id in ids:
        check_job_id(job_id)
        assert (
            re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job_id) and len(job_id) <= 63
        )  # a valid object name


def test_a_cluster_event_stream_reads_the_object_once_then_follows_the_queue(redis_client) -> None:
    """ClusterStream: the GenerationJob is read once; progress and the end come from the queue
    record (by the object's uid); without a record the object is read again only after
    refresh_seconds, and a job whose object is gone ends the stream (None)."""
    from genjob.keys import RedisKeys
    from genjob.queue import JobQueue, NewJob
    from genjob_api.backends.cluster_stream import ClusterStream
    from genjob_api.models import Generation, Status

    queue = JobQueue(redis_client, RedisKeys("t"), ["free"])
    reads: list[str] = []
    pending = Generation(id="job-1", status=Status.PENDING, tier="free", spec={})
    gone = {"now": False}

    def read_object() -> tuple[Generation, str] | None:
        reads.append("GET")
        return None if gone["now"] else (pending, "uid-1")

    now = {"t": 0.0}
    stream = ClusterStream(
        "job-1", read_object, queue, WaitEstimator(), refresh_seconds=10, clock=lambda: now["t"]
    )
    assert stream().status == Status.PENDING and stream().status == Status.PENDING and len(reads) == 1
    now["t"] = 10.0
    assert stream().status == Status.PENDING and len(reads) == 2  # no record yet: refreshed
    queue.enqueue(NewJob(id="uid-1", tier="free", spec={"prompt": "x"}))
    [claimed] = queue.claim(["free"], "w")
    for step in (1, 2):
        queue.report_progress(claimed, "w", step, 2)
        view = stream()
        assert view.id == "job-1" and view.status == Status.RUNNING and view.progress.step == step
    queue.complete(claimed, {"images": [], "seed": 1})
    assert stream().status == Status.SUCCEEDED and len(reads) == 2
    other = ClusterStream("job-2", read_object, queue, WaitEstimator())
    gone["now"] = True
    assert other() is None
