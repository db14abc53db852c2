"""Redis ACL users of genjob's components: the commands and key patterns each one needs.

One user per component, so a compromised pod holds only its own component's rights
(docs/security.md, docs/redis.md):

- `gateway`: the queue's keys and scripts, its own keys (idempotency, rate limits, tenant
  indexes), the events consumer group (webhooks) and `WAIT`;
- `operator`: the queue's keys and scripts, the events consumer group and its quota indexes (the
  per-tenant admitted-job sets); not the gateway's keys;
- `worker`: the queue's keys and scripts; not the gateway's keys, not consumer groups;
- `keda`: read the type and length of the pending and in-flight keys; no write, no other key.

None may run an admin command (`FLUSHALL`, `CONFIG`, `KEYS`, `SCRIPT FLUSH`, `ACL`, ...), or
touch a key outside its patterns, directly or from a script.

Key patterns come from `RedisKeys.*_patterns` (genjob/keys.py owns the names); commands are what the
Lua scripts call (Redis checks every command a script runs against its caller's ACL) plus
what each component sends itself. `tests/core/test_core_redis_acl.py` proves on a real
redis-server that each component works with its user and cannot do what this forbids
(`tests/api/test_api_redis_acl.py` for the gateway's own scripts and records), and every
gateway test (tests/api) runs the gateway and its worker as their own users.

The Helm chart creates these users on its bundled Redis from `charts/genjob/files/redis-acl.yaml`,
which is this module's output (`python -m genjob.redis_acl --chart`, checked by a test); for an
external Redis, `python -m genjob.redis_acl --prefix <keyPrefix>` prints the `ACL SETUSER` lines.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import yaml

from genjob.keys import RedisKeys

# Sent by redis-py on connect (AUTH, HELLO; SELECT for a database other than 0). Not CLIENT
# SETINFO: redis-py and go-redis (KEDA) ignore its refusal, and Redis 7.0 does not know it.
CONNECTION = ("auth", "hello", "ping", "select")
# Scripts run by SHA, loaded again on NOSCRIPT; pipelines may run as MULTI/EXEC.
SCRIPTING = ("evalsha", "eval", "script|load", "script|exists", "multi", "exec", "discard")
# Every command the queue's Lua scripts call (genjob/queue/lua/*.lua).
QUEUE_SCRIPTS = (
    "del", "exists", "expire", "hdel", "hget", "hincrby", "hincrbyfloat", "hmget", "hset", "incr",
    "lindex", "llen", "lpop", "lpos", "lpush", "lrem", "ltrim", "persist", "rpush", "sadd", "scard",
    "smembers", "srem", "time", "xadd", "zadd", "zcard", "zcount", "zrange", "zrangebyscore", "zrank",
    "zrem",
)  # fmt: skip
# What JobQueue calls directly (get, get_many, stats, unfinished_ids, dead_letters, the
# orphaned-checkpoint set), and the idle worker's wait on its wake lists.
QUEUE_READS = ("hgetall", "llen", "lrange", "zcard", "zrange", "time", "blpop", "srandmember", "srem")
# genjob.queue.events.EventReader: the operator's status sync, the gateway's webhooks.
EVENT_GROUPS = ("xgroup|create", "xreadgroup", "xack", "xautoclaim", "xclaim", "xrange")
# The gateway's own: idempotency records, the tenant job index, its scripts (submit.lua,
# hit.lua, ratelimit.lua: sets for the tenant's active jobs, the rate counter's window),
# and WAIT for acknowledged-means-durable submits.
GATEWAY_OWN = (
    "get", "set", "zrevrange", "zrevrank", "sadd", "srem", "scard", "smembers", "zremrangebyscore",
    "wait",
)  # fmt: skip
# KEDA's redis and redis-sentinel scalers: PING when they start, then TYPE and the length.
SCALER = (*CONNECTION, "type", "llen", "zcard")


@dataclass(frozen=True)
class AclUser:
    """One component's user: `rules()` are ACL SETUSER rules after the password."""

    name: str
    commands: tuple[str, ...]
    key_patterns: tuple[str, ...]
    read_only: bool = False

    def rules(self) -> list[str]:
        key = "%R~" if self.read_only else "~"
        return [
            "resetkeys",
            "resetchannels",
            "-@all",
            *(f"+{c}" for c in sorted(set(self.commands))),
            *(key + p for p in self.key_patterns),
        ]


def acl_users(keys: RedisKeys) -> dict[str, AclUser]:
    """The four users, by component name."""
    queue = keys.queue_patterns()
    common = CONNECTION + SCRIPTING + QUEUE_SCRIPTS + QUEUE_READS
    return {
        "gateway": AclUser(
            "gateway", common + EVENT_GROUPS + GATEWAY_OWN, tuple(queue + keys.gateway_patterns())
        ),
        "operator": AclUser("operator", common + EVENT_GROUPS, tuple(queue + keys.operator_patterns())),
        "worker": AclUser("worker", common, tuple(queue)),
        "keda": AclUser("keda", SCALER, tuple(keys.scaler_patterns()), read_only=True),
    }


def setuser_commands(keys: RedisKeys, user_prefix: str = "genjob-") -> list[list[str]]:
    """`ACL SETUSER` argument lists (without a password: add `>secret` and `on`)."""
    return [["ACL", "SETUSER", user_prefix + u.name, *u.rules()] for u in acl_users(keys).values()]


# The chart's copy uses this placeholder for `redis.keyPrefix` (charts/genjob/files/redis-acl.yaml).
CHART_PREFIX = "KEY_PREFIX"


def chart_file() -> str:
    """charts/genjob/files/redis-acl.yaml: each user's rules, the key prefix as CHART_PREFIX."""
    users = {name: " ".join(u.rules()) for name, u in acl_users(RedisKeys(CHART_PREFIX)).items()}
    header = (
        "# Generated by `python -m genjob.redis_acl --chart` from genjob/redis_acl.py (do not edit):\n"
        f"# the ACL rules of each component's Redis user; {CHART_PREFIX} is replaced by redis.keyPrefix.\n"
    )
    return header + yaml.safe_dump(users, sort_keys=False, width=10_000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="genjob", help="redis.key_prefix")
    parser.add_argument("--user-prefix", default="genjob-", help="prefix of the user names")
    parser.add_argument("--chart", action="store_true", help="print charts/genjob/files/redis-acl.yaml")
    args = parser.parse_args(argv)
    if args.chart:
        sys.stdout.write(chart_file())
        return 0
    for command in setuser_commands(RedisKeys(args.prefix), args.user_prefix):
        print(" ".join(command), "on", ">CHANGE-ME")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
