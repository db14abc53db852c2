"""Webhook delivery against hostile receivers (real sockets on loopback) and a real Redis:
a receiver that streams 1 GB, trickles one byte a second or never answers cannot hold the
gateway, and one tenant's slow receivers do not delay another tenant's webhooks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import queue
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from standardwebhooks import Webhook, WebhookVerificationError

from genjob.keys import RedisKeys
from genjob.queue import JobEvent
from genjob_api.backends import WaitEstimator
from genjob_api.webhook_delivery import DeliveryPolicy, WebhookSender, WebhookTarget, signature_headers
from genjob_api.webhooks import WebhookDispatcher

GIGABYTE = 1 << 30
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


class Receiver:
    """A raw HTTP/1.1 receiver on loopback whose answer is `mode`: ok (204), flood (200 and a
    1 GB body), trickle (the status line one byte a second) or silent (never answers)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        self.connections = 0
        self.open_connections = 0
        self.bytes_sent = 0
        self.closing = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                receiver._serve(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def _serve(self, sock: socket.socket) -> None:
        self._count(connections=1, open_connections=1)
        try:
            headers, body = _read_request(sock)
            self.requests.put((headers, body))
            with contextlib.suppress(OSError):
                getattr(self, f"_answer_{self.mode}")(sock)
        finally:
            self._count(open_connections=-1)

    def _answer_ok(self, sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def _answer_flood(self, sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % GIGABYTE)
        chunk = b"\0" * 65536
        while self.bytes_sent < GIGABYTE and not self.closing.is_set():
            sock.sendall(chunk)  # raises once the client closed the connection
            self._count(bytes_sent=len(chunk))

    def _answer_trickle(self, sock: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            if self.closing.wait(1.0):
                return
            sock.sendall(bytes([byte]))

    def _answer_silent(self, sock: socket.socket) -> None:
        sock.settimeout(0.2)
        while not self.closing.is_set():
            try:
                if not sock.recv(1024):
                    return  # the client gave up and closed
            except TimeoutError:
                continue

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def _read_request(sock: socket.socket) -> tuple[dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")[1:]
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return headers, body


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    made = {mode: Receiver(mode) for mode in ("ok", "flood", "trickle", "silent")}
    yield made
    for receiver in made.values():
        receiver.close()


POLICY = DeliveryPolicy(
    max_attempts=2,
    backoff_seconds=0.05,
    attempt_deadline_seconds=1.5,
    response_cap_bytes=64 * 1024,
    allow_private=True,
)


def _send(url: str, policy: DeliveryPolicy = POLICY) -> bool:
    async def run() -> bool:
        async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as http:
            sender = WebhookSender(http, policy, time.time)

            async def body() -> bytes:
                return b'{"id":"gen-1","status":"succeeded"}'

            return await sender.deliver(WebhookTarget("gen-1", url, "k", "t"), "gen-1:1-0", SECRET, body)

    return asyncio.run(asyncio.wait_for(run(), 60))  # a hang fails the test instead of stalling it


def test_a_receiver_streaming_a_gigabyte_is_cut_off_after_the_cap(receivers: dict[str, Receiver]) -> None:
    """The answer is streamed and dropped after the cap: the receiver could send only what
    the socket buffers hold beyond it, nowhere near its 1 GB."""
    flood = receivers["flood"]
    assert _send(flood.url)  # the status was 200: delivered
    assert flood.connections == 1
    assert flood.bytes_sent < 16 * 1024 * 1024, flood.bytes_sent


@pytest.mark.parametrize("mode", ["trickle", "silent"])
def test_a_slow_or_silent_receiver_fails_each_attempt_at_its_deadline(
    receivers: dict[str, Receiver], mode: str
) -> None:
    """A receiver that trickles its status line a byte a second (each read within any
    per-read timeout) or never answers: every attempt ends at the overall deadline and the
    delivery gives up after max_attempts, with the connections closed."""
    receiver = receivers[mode]
    assert not _send(receiver.url)
    assert receiver.connections == POLICY.max_attempts
    deadline = time.monotonic() + 10
    while receiver.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.open_connections == 0


def test_signatures_verify_with_the_standard_webhooks_library(receivers: dict[str, Receiver]) -> None:
    ok = receivers["ok"]
    assert _send(ok.url)
    headers, body = ok.requests.get(timeout=5)
    assert headers["webhook-id"] == "gen-1:1-0" and headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(body, headers) == {"id": "gen-1", "status": "succeeded"}
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()).verify(
            body, headers
        )
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)


def test_a_secret_without_the_whsec_prefix_signs_with_its_bytes() -> None:
    secret = "plain-secret-0123456789"
    headers = signature_headers(secret, "gen-2:5-0", int(time.time()), b"{}")
    assert Webhook(secret.encode()).verify(b"{}", headers) == {}


def _final_event(client: redis.Redis, keys: RedisKeys, job_id: str) -> None:
    client.xadd(keys.final_events, {"type": "succeeded", "job": job_id, "tier": "free", "ts": "0"})


def _dispatcher(
    client: redis.Redis, keys: RedisKeys, urls: dict[str, tuple[str, str]], **kwargs: Any
) -> WebhookDispatcher:
    """A dispatcher whose jobs `urls` maps to (tenant, receiver URL)."""

    def target_of(event: JobEvent) -> WebhookTarget | None:
        tenant, url = urls[event.job_id]
        return WebhookTarget(event.job_id, url, "k", tenant)

    return WebhookDispatcher(
        client,
        keys,
        target_of,
        lambda _key: SECRET,
        lambda target: {"id": target.job_id, "status": "succeeded"},
        "gateway-1",
        **kwargs,
    )


def test_one_tenants_silent_receivers_do_not_delay_another_tenants_webhook(
    redis_client: redis.Redis, receivers: dict[str, Receiver]
) -> None:
    """Tenant A's twelve webhooks go to a receiver that never answers (each attempt holds its
    connection for the deadline); tenant B's one webhook, queued after them, arrives while
    A's attempts are all still hanging."""
    keys = RedisKeys("fair")
    silent, ok = receivers["silent"], receivers["ok"]
    urls = {f"a-{i}": ("tenant-a", silent.url) for i in range(12)}
    urls["b-0"] = ("tenant-b", ok.url)
    for job_id in urls:
        _final_event(redis_client, keys, job_id)
    policy = DeliveryPolicy(max_attempts=1, attempt_deadline_seconds=30, allow_private=True)
    dispatcher = _dispatcher(redis_client, keys, urls, policy=policy, per_tenant_concurrency=4)
    dispatcher.start()
    try:
        _headers, body = ok.requests.get(timeout=20)
        assert json.loads(body)["id"] == "b-0"
        assert silent.open_connections == 4  # A holds its own four slots, no more
        assert silent.connections == 4
    finally:
        dispatcher.stop()


def test_an_entry_in_flight_is_not_adopted_again(
    redis_client: redis.Redis, receivers: dict[str, Receiver]
) -> None:
    """Adoption rounds every 0.1 s with entries idle for 50 ms: the one delivery in flight (a
    silent receiver) is neither sent a second time by this replica nor left idle for another
    replica to adopt."""
    keys = RedisKeys("adopt")
    silent = receivers["silent"]
    _final_event(redis_client, keys, "slow")
    policy = DeliveryPolicy(max_attempts=1, attempt_deadline_seconds=30, allow_private=True)
    dispatcher = _dispatcher(
        redis_client,
        keys,
        {"slow": ("t", silent.url)},
        policy=policy,
        adopt_idle_ms=50,
        adopt_every_seconds=0.1,
    )
    dispatcher.start()
    try:
        silent.requests.get(timeout=20)
        time.sleep(1.5)  # many adoption rounds pass while the delivery hangs
        assert silent.connections == 1
        pending = redis_client.xpending_range(keys.final_events, "genjob-gateway-webhooks", "-", "+", 10)
        assert [p["consumer"] for p in pending] == ["gateway-1"]
        assert all(p["time_since_delivered"] < 1000 for p in pending)  # kept claimed, not idle
    finally:
        dispatcher.stop()


def test_every_final_event_teaches_the_wait_estimator_webhook_or_not(redis_client: redis.Redis) -> None:
    """The wait estimate learns from the jobs that finish (their pipeline seconds), read once
    from the final-event stream, not from whoever happens to GET a finished job."""
    keys = RedisKeys("estimate")
    for job_id, kind, seconds in (("a", "succeeded", "4"), ("b", "failed", "99"), ("c", "succeeded", "8")):
        redis_client.xadd(
            keys.final_events,
            {"type": kind, "job": job_id, "tier": "free", "ts": "0", "gpu_seconds": seconds},
        )
    estimator = WaitEstimator(alpha=0.5)
    dispatcher = WebhookDispatcher(
        redis_client,
        keys,
        lambda _event: None,  # no job asked for a webhook
        lambda _key: SECRET,
        lambda _target: None,
        "gateway-1",
        on_final=estimator.observe_event,
    )
    dispatcher.start()
    try:
        deadline = time.monotonic() + 20
        while estimator.mean_seconds != 7.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert estimator.mean_seconds == 7.5  # (10 + 4) / 2, then (7 + 8) / 2; the failure not counted
    finally:
        dispatcher.stop()
