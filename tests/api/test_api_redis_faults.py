"""The gateway's submit when Redis misbehaves: every 503 it answers is true, and a retry under
the same Idempotency-Key never creates a second job.

- a lost reply: the submit ran, the gateway never heard (a proxy between gateway and Redis
  lets the command through and drops the reply, a fault a real Redis cannot make);
- acknowledged means durable: with `redis.wait_replicas`, 202 only once a replica has the job;
- a full Redis (maxmemory, noeviction) answers 503 queue_full instead of a crash.

The gateway runs in this process (TestClient) against real redis-server processes.
"""

from __future__ import annotations

import json
import select
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from genjob.keys import RedisKeys
from genjob.localredis import RedisServer, free_port
from genjob.settings import GenjobSettings
from genjob_api.auth import hash_key
from genjob_api.main import create_app

HEADERS = {"Authorization": "Bearer k1", "Idempotency-Key": "order-42"}
BODY = {"prompt": "a fox", "width": 64, "height": 64, "steps": 2}


class ReplyDroppingProxy:
    """While armed with a marker (e.g. b"EVALSHA"), a client command containing it is sent to
    Redis, Redis's reply is read and thrown away and the client's connection is closed: the
    command ran, the client never learns its outcome. Everything else passes through."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.drop_marker: bytes | None = None
        self.dropped = 0
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        with client, upstream:
            while not self._stop.is_set():
                readable, _, _ = select.select([client, upstream], [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is upstream:
                        client.sendall(data)
                        continue
                    upstream.sendall(data)
                    if self.drop_marker is not None and self.drop_marker in data:
                        upstream.settimeout(5)
                        reply = upstream.recv(65536)
                        if reply.startswith(b"-"):  # an error (NOSCRIPT): the command did not run
                            client.sendall(reply)
                            continue
                        self.dropped += 1  # the command ran; nobody hears of it
                        return  # closes both connections

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[ReplyDroppingProxy]:
    redis_server.client().flushdb()
    proxy = ReplyDroppingProxy(redis_server.port)
    yield proxy
    proxy.close()


Gateway = Callable[..., TestClient]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """Starts the gateway (local mode, one key "k1" of tier pro) on a Redis URL, with extra
    redis settings."""
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"key_sha256": hash_key("k1"), "tenant": "t", "tier": "pro"}]))
    clients: list[TestClient] = []

    def start(url: str, api: dict[str, object] | None = None, **redis_settings: object) -> TestClient:
        settings = GenjobSettings(
            redis={"url": url, **redis_settings}, api={"api_keys_file": str(keys), **(api or {})}
        )
        client = TestClient(create_app(settings, background=False)).__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def job_keys(client: redis.Redis) -> list[str]:
    return sorted(client.scan_iter(RedisKeys().job("*")))


def test_a_submit_whose_reply_was_lost_is_not_created_twice_on_retry(
    proxy: ReplyDroppingProxy, gateway: Gateway, redis_server: RedisServer
) -> None:
    api = gateway(proxy.url, retries=1)  # one silent retry (dropped too), then the 503
    proxy.drop_marker = b"EVALSHA"
    lost = api.post("/v1/generations", json=BODY, headers=HEADERS)
    assert lost.status_code == 503 and lost.json()["error"]["code"] == "queue_unavailable"
    assert proxy.dropped >= 1, "the submit reached Redis and its reply was dropped"

    proxy.drop_marker = None
    retried = api.post("/v1/generations", json=BODY, headers=HEADERS)
    assert retried.status_code == 202, retried.text
    assert job_keys(redis_server.client()) == [RedisKeys().job(retried.json()["id"])]
    again = api.post("/v1/generations", json=BODY, headers=HEADERS)
    assert again.json()["id"] == retried.json()["id"]


def test_a_submit_is_answered_202_only_once_a_replica_has_it(gateway: Gateway, tmp_path: Path) -> None:
    primary = RedisServer(tmp_path / "primary").start()
    replica = RedisServer(tmp_path / "replica", replica_of=primary.port).start()
    try:
        api = gateway(primary.url, wait_replicas=1, wait_timeout_ms=2000)  # a loaded machine
        accepted = api.post("/v1/generations", json=BODY, headers=HEADERS)
        assert accepted.status_code == 202, accepted.text
        assert job_keys(replica.client()) == [RedisKeys().job(accepted.json()["id"])]

        replica.stop(kill=True)
        other = {**HEADERS, "Idempotency-Key": "order-43"}
        unsure = api.post("/v1/generations", json=BODY, headers=other)
        assert unsure.status_code == 503 and unsure.json()["error"]["code"] == "queue_not_durable"
        assert unsure.headers["Retry-After"]

        replica.start()
        retried = api.post("/v1/generations", json=BODY, headers=other)
        assert retried.status_code == 202, retried.text
        assert len(job_keys(primary.client())) == 2, "the retry found the job the 503 was about"
    finally:
        replica.stop()
        primary.stop()


def test_a_full_redis_answers_queue_full(gateway: Gateway, redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.flushdb()
    api = gateway(redis_server.url)
    assert api.post("/v1/generations", json=BODY, headers=HEADERS).status_code == 202
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used // 2)
    try:
        full = api.post("/v1/generations", json=BODY, headers={**HEADERS, "Idempotency-Key": "x"})
        assert full.status_code == 503, full.text
        assert full.json()["error"]["code"] == "queue_full" and full.headers["Retry-After"]
    finally:
        client.config_set("maxmemory", 0)
    assert (
        api.post("/v1/generations", json=BODY, headers={**HEADERS, "Idempotency-Key": "x"}).status_code == 202
    )


def test_a_tenant_over_its_cap_of_unfinished_jobs_is_refused_until_one_finishes(
    gateway: Gateway, redis_server: RedisServer
) -> None:
    """Local mode: `api.max_queued_per_tenant` unfinished jobs per tenant; more is a 429 that
    names the cap, and a finished (here: cancelled) job frees its place."""
    redis_server.client().flushdb()
    api = gateway(redis_server.url, api={"max_queued_per_tenant": 2})
    auth = {"Authorization": "Bearer k1"}
    first, second = (api.post("/v1/generations", json=BODY, headers=auth) for _ in range(2))
    assert first.status_code == second.status_code == 202
    over = api.post("/v1/generations", json=BODY, headers=auth)
    assert over.status_code == 429, over.text
    assert over.json()["error"]["code"] == "tenant_queue_full" and "2" in over.json()["error"]["message"]
    assert len(job_keys(redis_server.client())) == 2, "nothing queued for the refused request"
    assert api.delete(f"/v1/generations/{first.json()['id']}", headers=auth).status_code == 200
    assert api.post("/v1/generations", json=BODY, headers=auth).status_code == 202
