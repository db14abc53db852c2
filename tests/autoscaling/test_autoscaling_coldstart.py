"""The cold-start bench in its short form, and push activation against the real KEDA.

The release is upgraded to serve KEDA's external-push trigger (KEDA runs on the host here, so
it dials the operator's process on 127.0.0.1 with the chart's mutual-TLS certificates) with a
polling interval of an hour: a pool that leaves zero within this test was woken by the push.
Then bench/coldstart.py times two cold starts, one with a node to provision and one on a
present node. Nothing here asserts how long a phase took (that is the bench's job).
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.coldstart import PHASES, Activation, ColdStarts, summarize
from genjob_cluster.processes import free_port  # the package the conftest registers

from .conftest import NAMESPACE, Release

pytestmark = [pytest.mark.cluster, pytest.mark.autoscaling]

TIER = "pro"
KUBERNETES_PHASES = ("NodeClaim launched", "node Ready")


@pytest.fixture
def push_release(release: Release) -> Any:
    """The session release with push activation and hour-long polling; restored afterwards."""
    activation = Activation("push", push=True, polling_interval=3600)
    release.cluster.helm(
        *release.upgrade_args(), *activation.helm_set(free_port()), "--wait", "--timeout", "180s"
    )
    delay = release.runner.config.model_load_delay
    release.runner.config.model_load_delay = 1.0
    try:
        yield release
    finally:
        release.runner.config.model_load_delay = delay
        release.cluster.helm(*release.upgrade_args(), "--wait", "--timeout", "180s")


def test_push_wakes_a_pool_at_zero_and_the_bench_times_every_phase(push_release: Release) -> None:
    r = push_release
    starts = ColdStarts(
        r.api, r.redis.client(), r.keys, NAMESPACE, r.worker_deployment, log=lambda m: print(m, flush=True)
    )
    # Polling every hour: only the push can wake the pool within these cold starts.
    starts.to_zero(TIER, without_nodes=True)
    to_provision = starts.cold_start(TIER)
    starts.to_zero(TIER, without_nodes=False)
    present = starts.cold_start(TIER)
    starts.to_zero(TIER, without_nodes=True)

    assert to_provision.node_launched and not present.node_launched
    assert set(to_provision.at) == set(PHASES), to_provision.at
    # KEDA keeps the ScaledObject Active until its next poll (an hour away): the second cold start
    # has no "ScaledObject active" of its own.
    assert set(present.at) == set(PHASES) - {*KUBERNETES_PHASES, "ScaledObject active"}, present.at
    for run in (to_provision, present):
        at = run.at
        # The queue's own events (one clock) come in protocol order; the pod before its process.
        assert at["queued"] <= at["job claimed"] <= at["image stored"], at
        assert at["pod created"] <= at["pod Running"], at
        assert at["worker ready"] <= at["job claimed"], at
    summary = summarize([to_provision, present])
    assert summary["cold_starts"] == 2
    assert set(summary["submit_to_claimed"]) == {"p50", "p95", "n"}
    assert summary["phases_since_submit"]["NodeClaim launched"]["n"] == 1
