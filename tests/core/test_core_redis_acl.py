"""Each component's Redis ACL user (genjob/redis_acl.py) on a real redis-server: the operator,
the worker and KEDA do their work with their own user, and cannot do what they do not need
(KEDA cannot write, the worker cannot touch the gateway's keys or run admin commands)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from genjob.connect import job_queue
from genjob.keys import RedisKeys
from genjob.localredis import RedisServer
from genjob.queue import EventReader, JobState, NewJob
from genjob.redis_acl import QUEUE_SCRIPTS, acl_users, chart_file, setuser_commands
from genjob.settings import GenjobSettings

PREFIX = "acltest"
KEYS = RedisKeys(PREFIX)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("acl-redis")).start()
    admin = server.client()
    for command in setuser_commands(KEYS):
        admin.execute_command(*command, "on", f">pw-{command[2]}")
    yield server
    server.stop()


def settings_of(server: RedisServer, component: str) -> GenjobSettings:
    user = f"genjob-{component}"
    return GenjobSettings(
        redis={"url": server.url, "key_prefix": PREFIX, "username": user, "password": f"pw-{user}"}
    )


def client_of(server: RedisServer, component: str) -> redis.Redis:
    user = f"genjob-{component}"
    return redis.Redis.from_url(server.url, username=user, password=f"pw-{user}", decode_responses=True)


def test_operator_and_worker_run_a_job_through_every_path_with_their_own_users(server: RedisServer) -> None:
    operator, worker = job_queue(settings_of(server, "operator")), job_queue(settings_of(server, "worker"))
    reader = EventReader(operator.client, KEYS, "op-1")
    for name in "abcd":
        assert operator.enqueue(NewJob(id=name, tier="free", spec={"prompt": name})).created
    (a,) = worker.claim(["free"], "w1", block_seconds=1)
    assert worker.heartbeat(a, "w1").lease_held
    worker.report_progress(a, "w1", 1, 2)
    assert worker.complete(a, {"ok": True}).applied
    (b,) = worker.claim(["free"], "w1")
    assert worker.fail(b, "WorkerFault", "boom", retryable=False).applied
    (c,) = worker.claim(["free"], "w1")
    assert worker.requeue(c, "Preempted").applied
    operator.cancel("d")
    assert operator.reap().requeued == 0
    assert {s.tier: s.pending for s in operator.stats(["free"])}["free"] >= 1
    assert "c" in operator.unfinished_ids()
    records = operator.get_many(["a", "b", "d"])
    assert [r.state for r in records if r] == [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]
    events = reader.read(block_ms=None)
    assert events
    reader.keep_claimed(events)
    reader.adopt_idle(0)
    reader.ack(events)
    assert worker.get("a") is not None and worker.dead_letters("free") == ["b"]


def test_the_worker_cannot_touch_the_gateways_keys_nor_run_admin_commands(server: RedisServer) -> None:
    worker = client_of(server, "worker")
    for key in (KEYS.idempotency("k", "i"), KEYS.rate_limit("k", 1), KEYS.tenant_jobs("t")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.get(key)
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.delete(key)
    for command in (
        ["FLUSHALL"],
        ["CONFIG", "GET", "*"],
        ["KEYS", "*"],
        ["XGROUP", "DESTROY", KEYS.events, "g"],
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.execute_command(*command)
    with pytest.raises(redis.exceptions.NoPermissionError):  # a script's commands are checked too
        worker.eval("return redis.call('SET', KEYS[1], 'x')", 1, KEYS.idempotency("k", "i"))
    with pytest.raises(redis.exceptions.NoPermissionError):  # and keys outside the prefix
        worker.eval("return redis.call('DEL', KEYS[1])", 1, "other-app:data")


def test_the_operator_cannot_touch_the_gateways_keys(server: RedisServer) -> None:
    operator = client_of(server, "operator")
    with pytest.raises(redis.exceptions.NoPermissionError):
        operator.set(KEYS.idempotency("k", "i"), "x")
    with pytest.raises(redis.exceptions.NoPermissionError):
        operator.execute_command("FLUSHDB")


def test_keda_reads_queue_lengths_and_cannot_write(server: RedisServer) -> None:
    admin = server.client()
    admin.rpush(KEYS.pending("pro"), "x", "y")
    admin.zadd(KEYS.inflight("pro"), {"z": 1})
    keda = client_of(server, "keda")
    assert keda.ping()
    # What KEDA's redis scaler sends: TYPE, then LLEN or ZCARD by type.
    assert keda.type(KEYS.pending("pro")) == "list" and keda.llen(KEYS.pending("pro")) == 2
    assert keda.type(KEYS.inflight("pro")) == "zset" and keda.zcard(KEYS.inflight("pro")) == 1
    assert keda.zcard(KEYS.pending_by_priority("pro")) == 0
    for write in (
        lambda: keda.rpush(KEYS.pending("pro"), "evil"),
        lambda: keda.delete(KEYS.pending("pro")),
        lambda: keda.lpop(KEYS.pending("pro")),
        lambda: keda.llen(KEYS.dead("pro")),
        lambda: keda.hgetall(KEYS.job("x")),
        lambda: keda.eval("return 1", 0),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
    assert admin.llen(KEYS.pending("pro")) == 2


def every_key_name(keys: RedisKeys) -> dict[str, str]:
    """One name of each kind RedisKeys builds (every method and property, found by reflection,
    so a key added to genjob/keys.py is checked without editing this test)."""
    names = {}
    for attr, value in vars(RedisKeys).items():
        if attr.startswith("_") or attr.endswith("_patterns") or attr in ("tier_keys", "job_prefix"):
            continue
        if isinstance(value, property):
            names[attr] = getattr(keys, attr)
        elif callable(value):
            arity = value.__code__.co_argcount - 1
            names[attr] = value(keys, *(["x", 1][:arity] if attr == "rate_limit" else ["x"] * arity))
    names["by-priority seq"] = keys.pending_by_priority("x") + ":seq"
    return names


def test_every_key_is_covered_by_a_users_pattern() -> None:
    """A key added to genjob/keys.py without a pattern would be refused to every component."""
    patterns = KEYS.queue_patterns() + KEYS.gateway_patterns() + KEYS.operator_patterns()
    names = every_key_name(KEYS)
    assert len(names) > 15
    assert {a: n for a, n in names.items() if not any(fnmatch.fnmatchcase(n, p) for p in patterns)} == {}
    assert set(KEYS.gateway_patterns()).isdisjoint(acl_users(KEYS)["worker"].key_patterns)


def test_the_users_may_run_every_command_the_lua_scripts_call() -> None:
    called = set()
    for lua in [*REPO.glob("genjob/queue/lua/*.lua"), *REPO.glob("api/genjob_api/lua/*.lua")]:
        called |= {c.lower() for c in re.findall(r"redis\.p?call\('(\w+)'", lua.read_text())}
    users = acl_users(KEYS)
    queue_called = {
        c.lower()
        for lua in REPO.glob("genjob/queue/lua/*.lua")
        for c in re.findall(r"redis\.p?call\('(\w+)'", lua.read_text())
    }
    assert queue_called == set(QUEUE_SCRIPTS)
    assert called - set(users["gateway"].commands) == set()


def test_the_charts_copy_of_the_rules_is_current() -> None:
    """charts/genjob/files/redis-acl.yaml is `python -m genjob.redis_acl --chart`."""
    assert (REPO / "charts/genjob/files/redis-acl.yaml").read_text() == chart_file()
