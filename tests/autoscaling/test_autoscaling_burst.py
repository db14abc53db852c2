"""Scenario b: a burst of jobs into one tier.

40 jobs into `pro` (maxReplicas 4, listLength 1): the replicas follow
ceil((pending + inflight) / listLength) up to maxReplicas; while jobs still run the pool never
has fewer replicas than busy workers; on scale-in the ReplicaSet removes only idle workers
(they cleared their pod-deletion-cost and do-not-disrupt): no busy pod is told to stop and no
job is requeued by the scale-in.
"""

from __future__ import annotations

import math
import time

import pytest

from genjob.queue import EventType

from .conftest import NAMESPACE, Release, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.autoscaling]

TIER, MAX_REPLICAS, LIST_LENGTH = "pro", 4, 1
BUSY = "karpenter.sh/do-not-disrupt"


def test_a_burst_scales_the_pool_with_the_queue_and_scale_in_removes_only_idle_workers(
    release: Release,
) -> None:
    wait_for(
        f"{TIER} pool at zero", lambda: release.replicas(TIER) == 0 and not release.worker_pods(TIER), 300
    )
    history_start = len(release.runner.history)
    start = time.monotonic()
    names = release.submit(TIER, 40, width=128, height=128, steps=30)
    samples: list[dict[str, float]] = []
    upgraded: list[int] = []

    def sample() -> bool:
        stats = release.queue.stats([TIER])[0]
        pods = release.worker_pods(TIER)
        busy = sum(
            1
            for p in pods
            if (p.metadata.annotations or {}).get(BUSY) == "true" and not p.metadata.deletion_timestamp
        )
        replicas = release.replicas(TIER)
        samples.append(
            {"t": time.monotonic() - start, "pending": stats.pending, "inflight": stats.inflight,
             "replicas": replicas, "busy": busy, "pods": len(pods)}
        )  # fmt: skip
        assert replicas <= MAX_REPLICAS, samples[-1]
        # A busy pool is never scaled below its busy workers (in-flight counts for KEDA).
        assert replicas >= busy, samples[-1]
        if replicas == MAX_REPLICAS and not upgraded:
            # A helm upgrade in the middle of a burst keeps the pool's live replica count.
            release.cluster.helm(*release.upgrade_args())
            upgraded.append(release.replicas(TIER))
        done = all(p == "Succeeded" for p in release.phases(names).values())
        return done and replicas == 0 and not pods

    wait_for("the burst to finish and the pool to return to zero", sample, timeout=600, interval=0.5,
             logs=[release.runner])  # fmt: skip

    peak = max(s["replicas"] for s in samples)
    print(f"\n[autoscaling] burst of {len(names)} jobs: peak replicas {peak}, samples {len(samples)}")
    for s in samples[:: max(1, len(samples) // 40)]:
        row = "  t={t:6.1f}s pending={pending:3d} inflight={inflight:2d} replicas={replicas} busy={busy}"
        print(row.format(**s))
    assert peak == MAX_REPLICAS
    assert upgraded == [MAX_REPLICAS], upgraded
    # While the backlog held more jobs than maxReplicas, the pool reached and kept maxReplicas
    # once scaled up: the desired count is min(max, ceil((pending + inflight) / listLength)).
    first_max = next(i for i, s in enumerate(samples) if s["replicas"] == MAX_REPLICAS)
    for s in samples[first_max:]:
        if math.ceil((s["pending"] + s["inflight"]) / LIST_LENGTH) > MAX_REPLICAS:
            assert s["replicas"] == MAX_REPLICAS, s
        else:
            break
    # Scale-in told only idle workers to stop, and requeued nothing.
    stops = [
        e
        for e in release.runner.history[history_start:]
        if e["event"] == "sigterm" and e["pod"].startswith(f"{NAMESPACE}/")
    ]
    assert len(stops) >= MAX_REPLICAS, stops
    busy_stops = [e for e in stops if e["annotations"].get(BUSY) == "true"]
    assert not busy_stops, busy_stops
    assert set(release.count_events(names, EventType.REQUEUED).values()) == {0}
    assert set(release.count_events(names, EventType.SUCCEEDED).values()) == {1}
    assert {release.job(n)["status"]["attempts"] for n in names} == {1}
