"""The bundled Redis StatefulSet's command line, run on a real redis-server (Debian package).

The chart's args are taken from the rendered StatefulSet, with only the data folder, the port and
the password (the kubelet's `$(REDIS_PASSWORD)` expansion) filled in: a misspelt flag, a missing
password or a lost AOF would fail here, not after an install.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from genjob.keys import RedisKeys
from genjob.localredis import free_port
from genjob.redis_acl import acl_users

PASSWORD = "chart-test-password"


def chart_redis_argv(rendered, data_dir: Path, port: int) -> list[str]:
    sts = next(d for d in rendered["default"] if d["kind"] == "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    argv = [*container["command"], *container["args"]]
    replace = {"$(REDIS_PASSWORD)": PASSWORD, mounts["data"]: str(data_dir), "6379": str(port)}
    for user in ("gateway", "operator", "worker", "keda"):  # the ACL users' passwords
        replace[f">$(ACL_{user.upper()}_PASSWORD)"] = f">{user}-{PASSWORD}"
    return [replace.get(a, a) for a in argv]


def start(argv: list[str], port: int) -> tuple[subprocess.Popen, redis.Redis]:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = redis.Redis(port=port, password=PASSWORD, decode_responses=True)
    for _ in range(100):
        try:
            client.ping()
            return process, client
        except redis.ConnectionError:
            if process.poll() is not None:
                pytest.fail(f"redis-server refused the chart's args: {process.stderr.read().decode()}")
            time.sleep(0.05)
    process.kill()
    pytest.fail("redis-server did not answer")


def wait_until_in_aof(data_dir: Path, text: str) -> None:
    """Redis 7.0 has no WAITAOF: wait for the append-only files to hold the write."""
    for _ in range(200):
        if any(text.encode() in f.read_bytes() for f in data_dir.rglob("*.aof*") if f.is_file()):
            return
        time.sleep(0.05)
    pytest.fail(f"{text!r} never reached the AOF in {data_dir}")


def test_chart_redis_args_give_a_password_aof_and_no_eviction(rendered, tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: `make redis-server`", pytrace=False)
    port = free_port()
    argv = chart_redis_argv(rendered, tmp_path, port)
    assert argv[0] == "redis-server"
    process, client = start(argv, port)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:  # no client retries
            raw.sendall(b"PING\r\n")
            assert raw.recv(100).startswith(b"-NOAUTH")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        client.rpush("genjob:pending:pro", "job-1")
        wait_until_in_aof(tmp_path, "job-1")  # written to the file (the kernel keeps it across kill -9)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    # kill -9 and a restart on the same volume (a rescheduled pod) keep the queued job.
    process, client = start(argv, port)
    try:
        assert client.lrange("genjob:pending:pro", 0, -1) == ["job-1"]
    finally:
        process.terminate()
        process.wait()


def test_chart_redis_args_create_each_components_acl_user(rendered, tmp_path: Path) -> None:
    """The users the chart creates are genjob/redis_acl.py's: KEDA reads lengths and cannot
    write, the worker cannot touch the gateway's keys or flush the database."""
    port = free_port()
    process, admin = start(chart_redis_argv(rendered, tmp_path, port), port)
    try:
        keys = RedisKeys("genjob")
        expected = acl_users(keys)
        for name, user in expected.items():
            rules = admin.acl_getuser(f"genjob-{name}")
            granted = {c for c in rules["commands"] if c.startswith("+")}
            assert granted and granted <= {f"+{c}" for c in user.commands}, name
            assert set(rules["keys"]) == {r for r in user.rules() if "~" in r}, name
        admin.rpush(keys.pending("pro"), "job-1")

        def as_user(name: str) -> redis.Redis:
            return redis.Redis(
                port=port, username=f"genjob-{name}", password=f"{name}-{PASSWORD}", decode_responses=True
            )

        keda, worker = as_user("keda"), as_user("worker")
        assert keda.llen(keys.pending("pro")) == 1
        with pytest.raises(redis.exceptions.NoPermissionError):
            keda.rpush(keys.pending("pro"), "evil")
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.get(keys.idempotency("key", "idem"))
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.flushall()
        assert worker.lrange(keys.pending("pro"), 0, -1) == ["job-1"]
    finally:
        process.terminate()
        process.wait()
