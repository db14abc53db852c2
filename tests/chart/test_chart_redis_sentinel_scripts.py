"""The chart's bundled Redis with replicas and Sentinel, run from its rendered manifests on real
redis-server processes (Debian package) on loopback: three servers and three sentinels started
by the start scripts of the rendered ConfigMap, with the StatefulSets' args and env (addresses
and the kubelet's `$(VAR)` expansions filled in).

A new release starts pod 0 as the primary; genjob, through the sentinels and as its own ACL user,
keeps working after the primary is killed; the killed pod, restarted by the same script, asks the
sentinels and comes back as a replica of the promoted server, never as a second primary.
Nothing here asserts a timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from genjob.connect import job_queue
from genjob.localredis import free_port
from genjob.queue import JobState, NewJob
from genjob.settings import GenjobSettings

PASSWORD = "chart-test-password"
SENTINEL_PASSWORD = "chart-sentinel-password"


def _by_name(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix))


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{what}: not within {timeout}s")


class ChartSentinelSet:
    """Three Redis servers and three sentinels, each started as its pod would start it."""

    def __init__(self, docs: list[dict[str, Any]], root: Path) -> None:
        scripts = _by_name(docs, "ConfigMap", "-redis-scripts")["data"]
        self.root = root
        bin_dir = root / "bin"  # Debian has no redis-sentinel command: the image does
        bin_dir.mkdir(parents=True)
        (bin_dir / "redis-sentinel").write_text('#!/bin/sh\nexec redis-server "$1" --sentinel\n')
        (bin_dir / "redis-sentinel").chmod(0o755)
        for name, text in scripts.items():
            (root / name).write_text(text)
        self.path = f"{bin_dir}:{os.environ['PATH']}"
        self.redis = _by_name(docs, "StatefulSet", "-redis")["spec"]["template"]["spec"]["containers"][0]
        self.sentinel = _by_name(docs, "StatefulSet", "-redis-sentinel")["spec"]["template"]["spec"][
            "containers"
        ][0]
        self.ports = [free_port() for _ in range(3)]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _env(self, container: dict[str, Any], addresses: dict[str, str]) -> dict[str, str]:
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        env.update(addresses, PATH=self.path, REDIS_PASSWORD=PASSWORD, SENTINEL_PASSWORD=SENTINEL_PASSWORD)
        return env

    def start_redis(self, i: int) -> None:
        data = self.root / f"redis-{i}"
        data.mkdir(exist_ok=True)
        replace = {"$(REDIS_PASSWORD)": PASSWORD, "/data": str(data), "6379": str(self.ports[i])}
        for user in ("gateway", "operator", "worker", "keda"):
            replace[f">$(ACL_{user.upper()}_PASSWORD)"] = f">{user}-{PASSWORD}"
        args = [replace.get(a, a) for a in self.redis["args"]]
        assert self.redis["command"] == ["sh", "/opt/genjob/start-redis.sh"]
        env = self._env(
            self.redis,
            {
                "SELF_ADDRESS": f"127.0.0.1:{self.ports[i]}",
                "FIRST_ADDRESS": f"127.0.0.1:{self.ports[0]}",
                "SENTINELS": " ".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
            },
        )
        with (self.root / f"redis-{i}.log").open("ab") as log:
            self.processes[f"redis-{i}"] = subprocess.Popen(
                ["sh", str(self.root / "start-redis.sh"), *args, "--bind", "127.0.0.1"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: self.admin(i).ping(), f"redis {i} answers")

    def start_sentinel(self, i: int) -> None:
        data = self.root / f"sentinel-{i}"
        data.mkdir(exist_ok=True)
        assert self.sentinel["command"] == ["sh", "/opt/genjob/start-sentinel.sh"]
        env = self._env(
            self.sentinel,
            {
                "SELF_ADDRESS": f"127.0.0.1:{self.sentinel_ports[i]}",
                "PEERS": " ".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
                "FIRST_ADDRESS": f"127.0.0.1:{self.ports[0]}",
                "SENTINEL_DIR": str(data),
            },
        )
        with (self.root / f"sentinel-{i}.log").open("ab") as log:
            self.processes[f"sentinel-{i}"] = subprocess.Popen(
                ["sh", str(self.root / "start-sentinel.sh")], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(lambda: self.sentinel_client(i).ping(), f"sentinel {i} answers")

    def admin(self, i: int) -> redis.Redis:
        return redis.Redis(port=self.ports[i], password=PASSWORD, decode_responses=True, socket_timeout=5)

    def sentinel_client(self, i: int) -> redis.Redis:
        return redis.Redis(
            port=self.sentinel_ports[i], password=SENTINEL_PASSWORD, decode_responses=True, socket_timeout=5
        )

    def named_primaries(self) -> set[int]:
        return {int(self.sentinel_client(i).sentinel_get_master_addr_by_name("genjob")[1]) for i in range(3)}

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name)


@pytest.fixture
def chart_sentinels(rendered, tmp_path: Path) -> Iterator[ChartSentinelSet]:
    deployment = ChartSentinelSet(rendered["redis-sentinel"], tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop()


def test_the_charts_sentinel_set_fails_over_and_the_old_primary_returns_as_a_replica(
    chart_sentinels: ChartSentinelSet,
) -> None:
    d = chart_sentinels
    for i in range(3):
        d.start_redis(i)
    for i in range(3):
        d.start_sentinel(i)
    assert d.admin(0).role()[0] == "master"  # a new release: pod 0 is the primary
    assert [d.admin(i).role()[0] for i in (1, 2)] == ["slave", "slave"]
    wait_until(lambda: d.named_primaries() == {d.ports[0]}, "every sentinel names pod 0")
    wait_until(
        lambda: all(len(d.sentinel_client(i).sentinel_slaves("genjob")) == 2 for i in range(3)),
        "every sentinel knows both replicas",
    )
    wait_until(
        lambda: all(len(d.sentinel_client(i).sentinel_sentinels("genjob")) == 2 for i in range(3)),
        "every sentinel knows its two peers",
    )
    settings = GenjobSettings(
        redis={
            "url": "redis://unused:6379/0",
            "sentinels": [f"127.0.0.1:{p}" for p in d.sentinel_ports],
            "sentinel_master": "genjob",
            "sentinel_password": SENTINEL_PASSWORD,
            "username": "genjob-operator",
            "password": f"operator-{PASSWORD}",
        }
    )
    queue = job_queue(settings)
    assert queue.enqueue(NewJob(id="before", tier="free", spec={"prompt": "a"})).created
    wait_until(lambda: d.admin(0).wait(2, 1000) == 2, "both replicas have the job")

    d.kill("redis-0")
    wait_until(lambda: len(d.named_primaries()) == 1 and d.ports[0] not in d.named_primaries(), "failover")
    (promoted,) = d.named_primaries()
    assert queue.enqueue(NewJob(id="after", tier="free", spec={"prompt": "b"})).created

    d.start_redis(0)  # the pod restarts: same script, same volume
    # It starts as a replica of the promoted server (asked the sentinels), not as a second
    # primary that Sentinel would demote only after it took writes.
    decision = (d.root / "redis-0.log").read_text().splitlines()
    assert f"start-redis: primary 127.0.0.1:{promoted}, this server 127.0.0.1:{d.ports[0]}" in decision
    assert d.admin(0).role()[:3] == ["slave", "127.0.0.1", promoted]
    assert d.named_primaries() == {promoted}
    claimed = queue.claim(["free"], "w", max_jobs=2)
    assert [j.id for j in claimed] == ["before", "after"]
    wait_until(lambda: d.admin(0).llen("genjob:pending:free") == 0, "the old primary caught up")
    record = queue.get("before")
    assert record is not None and record.state == JobState.RUNNING
