"""Validation (d): Little's law and utilisation sanity, for random small scenarios (hypothesis)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genjob.sim.inputs import load_catalog
from genjob.sim.model import RunData
from genjob.sim.results import summarize
from genjob.sim.scenario import Scenario

Build = Callable[..., Scenario]
Run = Callable[[Scenario], RunData]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rate=st.floats(10, 400),
    hours=st.floats(0.2, 3),
    list_length=st.integers(1, 3),
    polling=st.sampled_from([5, 15, 30]),
    cooldown=st.sampled_from([0, 60, 300]),
    max_replicas=st.integers(1, 8),
    steps=st.integers(10, 60),
    seed=st.integers(0, 2**16),
)
def test_littles_law_and_utilisation_hold(
    scenario: Build,
    run: Run,
    rate: float,
    hours: float,
    list_length: int,
    polling: int,
    cooldown: int,
    max_replicas: int,
    steps: int,
    seed: int,
) -> None:
    sc = scenario(
        seed=seed,
        workload=[
            {
                "tier": "pro",
                "arrivals": {"windows": [{"start_hour": 2, "hours": hours, "rate_per_hour": rate}]},
                "job": {"model": "sd15", "width": 512, "height": 512, "steps": steps},
            }
        ],
        pools={
            "pro": {
                "keda": {
                    "listLength": list_length,
                    "pollingInterval": polling,
                    "cooldownPeriod": cooldown,
                    "maxReplicas": max_replicas,
                }
            }
        },
    )
    result = run(sc)
    summary = summarize(result)
    # Little's law, L = lambda W, over the whole day: the system starts and ends empty.
    little = summary["tiers"]["pro"]["little"] if result.jobs else None
    if little is not None:
        lam_w = little["arrival_rate_per_second"] * little["mean_pending_seconds"]
        assert little["mean_pending"] == pytest.approx(lam_w, rel=1e-9, abs=1e-12)
    # every job ran exactly its GPU time (batch 1, no Spot): busy time is the offered work
    one = load_catalog().image_seconds("sd15", "A10G", 512, 512, steps)
    assert all(j.finished is not None for j in result.jobs)
    pool = result.pools["pro"]
    assert pool.busy_seconds == pytest.approx(len(result.jobs) * one, rel=1e-9)
    # nodes run at least as long as they compute, and never more workers than maxReplicas
    assert pool.node_seconds >= pool.busy_seconds
    assert 0 <= summary["pools"].get("pro", {"gpu_utilisation": 0})["gpu_utilisation"] <= 1
    assert pool.peak_replicas <= max_replicas
    assert all(n.deleted is not None for n in result.nodes)  # back to zero by the end of the day
