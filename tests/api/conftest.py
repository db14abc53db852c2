"""Fixtures of the gateway tests: a real gateway (`genjob api` under uvicorn, in a subprocess)
and a real worker (`genjob worker` on the tiny model) against the session's redis-server,
each with its own Redis ACL user (genjob/redis_acl.py), so every gateway test also proves
that the gateway and the worker need no more than their users allow.

The worker serves pro, starter and free only: jobs of enterprise keys stay queued, which
the cancel, listing and dead-letter tests rely on. Every key and its tenant:

| name | tenant | tier | notes |
| --- | --- | --- | --- |
| alice | alice | pro | webhook secret |
| bob | bob | free | |
| ent | dave | enterprise | never served |
| slow | carol | enterprise | 3 requests/minute |
| admin | ops | enterprise | admin |
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from genjob.keys import RedisKeys
from genjob.localredis import RedisServer, free_port
from genjob.queue import JobQueue
from genjob.redis_acl import setuser_commands
from genjob.settings import GenjobSettings
from genjob_api.auth import hash_key
from tests.support.processes import GenjobProcess, stop_all

PREFIX = "apitest"
MAX_STREAMS_PER_KEY = 2
WEBHOOK_SECRET = "whsec-test-0123456789abcdef"
KEYS: dict[str, dict[str, Any]] = {
    "alice": {"tenant": "alice", "tier": "pro", "webhook_secret": WEBHOOK_SECRET},
    "bob": {"tenant": "bob", "tier": "free"},
    "ent": {"tenant": "dave", "tier": "enterprise"},
    "slow": {"tenant": "carol", "tier": "enterprise", "rate_limit_per_minute": 3},
    "admin": {"tenant": "ops", "tier": "enterprise", "admin": True},
}
MAX_PROMPT_CHARS = 500
SMALL = {"width": 64, "height": 64, "steps": 2}


@dataclass
class Gateway:
    url: str
    keys: dict[str, str]
    redis: redis.Redis
    queue: JobQueue
    log_dir: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, who: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        c = httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)
        self.clients.append(c)
        return c

    def wait_for(self, who: str, job_id: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
        client = self.client(who)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = client.get(f"/v1/generations/{job_id}").json()
            if job["status"] in states:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} not in {states} after {timeout}s: {job}; logs in {self.log_dir}")


def _tiny_model(root: Path) -> Path:
    folder = root / "tiny"
    subprocess.run(
        [sys.executable, "-m", "genjob.cli", "model", "make-tiny", str(folder)],
        check=True,
        capture_output=True,
    )
    return folder


@pytest.fixture(scope="session")
def gateway_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of their own: other tiers' fixtures flush the shared one between tests."""
    server = RedisServer(tmp_path_factory.mktemp("gateway-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway_env(gateway_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("gateway")
    keys = {name: f"gj_test_{name}_key" for name in KEYS}
    entries = [{"key_sha256": hash_key(keys[n]), "id": n, **fields} for n, fields in KEYS.items()]
    (root / "keys.yaml").write_text(json.dumps({"keys": entries}))
    model = _tiny_model(root)
    env = dict(os.environ)
    env.update(
        {
            "GENJOB_REDIS__URL": gateway_redis.url,
            "GENJOB_REDIS__KEY_PREFIX": PREFIX,
            "GENJOB_RESULTS__PATH": str(root / "results"),
            "GENJOB_MODELS": json.dumps(
                {"tiny": {"source": str(model), "kind": "sd", "dtype": "float32", "memory_class": "tiny"}}
            ),
            "GENJOB_API__API_KEYS_FILE": str(root / "keys.yaml"),
            "GENJOB_API__MAX_PROMPT_CHARS": str(MAX_PROMPT_CHARS),
            "GENJOB_API__RATE_LIMIT_PER_MINUTE": "100000",
            "GENJOB_API__MAX_STREAMS_PER_KEY": str(MAX_STREAMS_PER_KEY),
            "GENJOB_API__WEBHOOK_ALLOW_PRIVATE": "true",  # the test receiver listens on loopback
            "GENJOB_OPERATOR__REAPER_INTERVAL_SECONDS": "0.5",  # the local gateway's lease reaper
            "GENJOB_LOG_FORMAT": "console",
            "GENJOB_ROOT": str(root),
            "GENJOB_TEST_KEYS": json.dumps(keys),
        }
    )
    env.pop("GENJOB_CONFIG_FILE", None)
    return env


def acl_user(server: RedisServer, env: dict[str, str], component: str) -> dict[str, str]:
    """`env` with the component's own Redis ACL user, created on `server` (admin: default user)."""
    (rules,) = [c for c in setuser_commands(RedisKeys(PREFIX)) if c[2] == f"genjob-{component}"]
    password = f"pw-{component}-0123456789"
    server.client().execute_command(*rules, "on", "resetpass", f">{password}")
    return dict(env, GENJOB_REDIS__USERNAME=rules[2], GENJOB_REDIS__PASSWORD=password)


@pytest.fixture(scope="session")
def gateway(gateway_env: dict[str, str], gateway_redis: RedisServer) -> Iterator[Gateway]:
    root = Path(gateway_env["GENJOB_ROOT"])
    port = free_port()
    logs = root / "logs"
    logs.mkdir()
    api_env = acl_user(gateway_redis, gateway_env, "gateway")
    api = GenjobProcess(["api", "--host", "127.0.0.1", "--port", str(port)], api_env, logs / "api.log")
    worker_env = dict(
        acl_user(gateway_redis, gateway_env, "worker"),
        GENJOB_WORKER__HTTP_PORT=str(free_port()),
        GENJOB_WORKER__NAME="api-test-w1",
    )
    worker = GenjobProcess(
        ["worker", "--tiers", "pro,starter,free", "--device", "cpu"], worker_env, logs / "worker.log"
    )
    procs = [api.start(), worker.start()]
    url = f"http://127.0.0.1:{port}"
    client = gateway_redis.client()
    settings = GenjobSettings(redis={"url": gateway_redis.url, "key_prefix": PREFIX})
    queue = JobQueue(client, RedisKeys(PREFIX), list(settings.tiers), settings.queue)
    gw = Gateway(url, json.loads(gateway_env["GENJOB_TEST_KEYS"]), client, queue, logs)
    try:
        api.wait_http(f"{url}/readyz", timeout=60)
        yield gw
    finally:
        for c in gw.clients:
            c.close()
        stop_all(procs, grace=20)


@pytest.fixture(scope="session")
def worker_ready(gateway: Gateway) -> Gateway:
    """The worker has loaded its model: one tiny job went through."""
    c = gateway.client("alice")
    job = c.post("/v1/generations", json={"prompt": "warm up", **SMALL}).json()
    gateway.wait_for("alice", job["id"], {"succeeded"}, timeout=180)
    return gateway


@pytest.fixture
def submit(gateway: Gateway) -> Callable[..., httpx.Response]:
    def post(who: str, body: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        return gateway.client(who).post(
            "/v1/generations", json=body or {"prompt": "a fox", **SMALL}, **kwargs
        )

    return post
