"""Prometheus metrics of the operator, in a registry of their own (tests create several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class OperatorMetrics:
    """Every metric the operator exports; one instance per operator process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.pending = Gauge(
            "genjob_operator_pending_jobs", "Jobs waiting in a tier's queue.", ["tier"], registry=r
        )
        self.inflight = Gauge(
            "genjob_operator_inflight_jobs", "Jobs being run in a tier.", ["tier"], registry=r
        )
        self.delayed = Gauge(
            "genjob_operator_delayed_jobs", "Jobs waiting for a retry backoff.", ["tier"], registry=r
        )
        self.dead_letters = Gauge(
            "genjob_operator_dead_letter_jobs", "Dead-lettered jobs of a tier.", ["tier"], registry=r
        )
        self.oldest_age = Gauge(
            "genjob_operator_oldest_pending_age_seconds",
            "Age of the oldest pending job.",
            ["tier"],
            registry=r,
        )
        self.jobs = Gauge(
            "genjob_operator_jobs",
            "GenerationJobs the operator sees, by phase and reason.",
            ["phase", "reason"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "genjob_operator_reconcile_errors_total",
            "Errors while reconciling, by stage.",
            ["stage"],
            registry=r,
        )
        self.api_writes = Counter(
            "genjob_operator_api_writes_total",
            "Kubernetes API writes the operator made, by kind (status, finalizer_add, "
            "finalizer_remove, delete, event).",
            ["kind"],
            registry=r,
        )
        self.events_consumed = Counter(
            "genjob_operator_stream_events_total", "Queue events consumed, by type.", ["type"], registry=r
        )
        self.admitted = Counter("genjob_operator_admitted_total", "Jobs enqueued.", ["tier"], registry=r)
        self.records_lost = Counter(
            "genjob_operator_queue_records_lost_total",
            "Queued or Running GenerationJobs the queue had no record of (Redis lost data); queued again.",
            registry=r,
        )
        self.is_leader = Gauge("genjob_operator_leader", "1 while this replica is the leader.", registry=r)
        self.loop_heartbeat = Gauge(
            "genjob_operator_loop_heartbeat_timestamp_seconds",
            "Last iteration of each background loop.",
            ["loop"],
            registry=r,
        )

    def set_job_counts(self, counts: dict[tuple[str, str], int]) -> None:
        """Replace the jobs-by-phase-and-reason gauge with fresh counts."""
        self.jobs.clear()
        for (phase, reason), n in counts.items():
            self.jobs.labels(phase=phase, reason=reason).set(n)
