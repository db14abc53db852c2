"""Every Redis key name genjob uses, in one place, all under one configurable prefix.

Layout (`{p}` is the prefix, `{tier}` a tier name, `{id}` a job id):

| key | type | holds |
| --- | --- | --- |
| `{p}:job:{id}` | hash | the job record: spec, state, attempts, lease, result |
| `{p}:pending:{tier}` | list | ids ready to run, claimed from the head (KEDA: list length) |
| `{p}:pending:{tier}:by-priority` | sorted set | pending ids of priority > 0, claimed first (KEDA: ZCARD) |
| `{p}:pending:{tier}:by-priority:seq` | string | sequence that keeps each priority band first-in first-out |
| `{p}:inflight:{tier}` | sorted set | ids being run, scored by lease deadline (KEDA: ZCARD) |
| `{p}:queued-at:{tier}` | sorted set | pending ids scored by enqueue time (oldest pending age) |
| `{p}:delayed:{tier}` | sorted set | ids waiting for a retry, scored by due time |
| `{p}:wake:{tier}` | list | wake-up tokens idle workers block on (one per enqueue) |
| `{p}:dead:{tier}` | list | dead-lettered ids, newest first |
| `{p}:events` | stream | every state change and progress report |
| `{p}:events:final` | stream | the final events only (succeeded, failed, cancelled): webhook delivery |
| `{p}:workers` | sorted set | worker ids scored by last heartbeat |
| `{p}:workers:{tier}` | sorted set | workers that claimed from the tier or ran its jobs, by last seen |
| `{p}:checkpoints:orphaned` | set | jobs that ended away from a worker, whose checkpoints workers delete |
| `{p}:ratelimit:{key}:{window}` | string | gateway request counter of an API key |
| `{p}:idem:{key}:{idempotency-key}` | string | gateway idempotency record |
| `{p}:tenant-jobs:{tenant}` | sorted set | gateway: a tenant's job ids scored by creation time (listing) |
| `{p}:webhook:{namespace}:{name}` | hash | gateway (cluster mode): a job's webhook URL, key id and tenant |
| `{p}:tenant-active:{tenant}` | set | gateway (local mode): job ids of a tenant that may be unfinished |
| `{p}:tenant-admitted:{tenant}:{tier}` | set | operator: admitted ids of a tenant in a tier (quota) |

The KEDA ScaledObjects of the Helm chart read `pending`, `pending:{tier}:by-priority` and
`inflight` by these names. The Lua scripts derive the by-priority keys from the pending key
they are given (`pending_by_priority(t) == pending(t) + ":by-priority"`).
"""

from __future__ import annotations

from dataclasses import dataclass

EVENTS_CONSUMER_GROUP = "genjob-operator"


@dataclass(frozen=True)
class RedisKeys:
    """Builds key names for one prefix."""

    prefix: str = "genjob"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    @property
    def job_prefix(self) -> str:
        """`job(id) == job_prefix + id`; Lua scripts build job keys from it."""
        return f"{self.prefix}:job:"

    def pending(self, tier: str) -> str:
        return f"{self.prefix}:pending:{tier}"

    def pending_by_priority(self, tier: str) -> str:
        return f"{self.pending(tier)}:by-priority"

    def inflight(self, tier: str) -> str:
        return f"{self.prefix}:inflight:{tier}"

    def queued_at(self, tier: str) -> str:
        return f"{self.prefix}:queued-at:{tier}"

    def delayed(self, tier: str) -> str:
        return f"{self.prefix}:delayed:{tier}"

    def wake(self, tier: str) -> str:
        return f"{self.prefix}:wake:{tier}"

    def dead(self, tier: str) -> str:
        return f"{self.prefix}:dead:{tier}"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def final_events(self) -> str:
        """Written by the scripts as the events key + ":final" (lua/_prelude.lua, `emit`)."""
        return f"{self.events}:final"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def tier_workers(self, tier: str) -> str:
        return f"{self.prefix}:workers:{tier}"

    @property
    def orphaned_checkpoints(self) -> str:
        return f"{self.prefix}:checkpoints:orphaned"

    def rate_limit(self, key_id: str, window: int) -> str:
        return f"{self.prefix}:ratelimit:{key_id}:{window}"

    def idempotency(self, key_id: str, idempotency_key: str) -> str:
        return f"{self.prefix}:idem:{key_id}:{idempotency_key}"

    def webhook_target(self, namespace: str, name: str) -> str:
        """Gateway (cluster mode): the webhook a GenerationJob's creating key asked for (URL, key
        id, tenant), written at submit; never read from the object, which its users can edit."""
        return f"{self.prefix}:webhook:{namespace}:{name}"

    def tenant_jobs(self, tenant: str) -> str:
        """Gateway (local mode): the job ids a tenant created, scored by creation time in ms."""
        return f"{self.prefix}:tenant-jobs:{tenant}"

    def tenant_active(self, tenant: str) -> str:
        """Gateway (local mode): ids of a tenant's jobs that may be unfinished; finished ones are
        pruned when the tenant reaches its cap (api.max_queued_per_tenant)."""
        return f"{self.prefix}:tenant-active:{tenant}"

    def tenant_admitted(self, tenant: str, tier: str) -> str:
        """Operator (cluster mode): ids of a tenant's admitted jobs in a tier that may be
        unfinished; the per-tenant quota counts the unfinished ones (JobQueue.count_unfinished)."""
        return f"{self.prefix}:tenant-admitted:{tenant}:{tier}"

    # -- ACL key patterns (genjob/redis_acl.py: each component's Redis user) ------------------

    def queue_patterns(self) -> list[str]:
        """Glob patterns of every key the queue's scripts and reads touch (gateway, operator,
        worker). A new queue key must be added here, or no component may use it."""
        a = "*"
        return [
            self.job(a),
            self.pending(a),  # and its by-priority set and sequence
            self.inflight(a),
            self.queued_at(a),
            self.delayed(a),
            self.wake(a),
            self.dead(a),
            self.events,
            self.final_events,
            self.workers,
            self.tier_workers(a),
            self.orphaned_checkpoints,
        ]

    def gateway_patterns(self) -> list[str]:
        """The keys only the gateway uses: rate limits, idempotency, the tenant indexes, the
        webhooks of cluster-mode jobs."""
        a = "*"
        return [
            self.rate_limit(a, 0).removesuffix("0") + a,  # any key, any window
            self.idempotency(a, a),
            self.tenant_jobs(a),
            self.tenant_active(a),
            self.webhook_target(a, a),
        ]

    def operator_patterns(self) -> list[str]:
        """The keys only the operator uses: the per-tenant admitted-job indexes (quota)."""
        return [self.tenant_admitted("*", "*")]

    def scaler_patterns(self) -> list[str]:
        """What KEDA's triggers read: pending lists, by-priority sets, in-flight sets."""
        return [self.pending("*"), self.inflight("*")]

    def tier_keys(self, tier: str) -> list[str]:
        """The per-tier keys, in the order the Lua scripts expect them."""
        return [
            self.pending(tier),
            self.inflight(tier),
            self.queued_at(tier),
            self.delayed(tier),
            self.wake(tier),
            self.dead(tier),
        ]
